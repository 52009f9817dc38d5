"""Build the instruction JSONL from BC5CDR PubTator files, exactly as the published recipe did.

Rules (they reproduce ``both_rel_instruct_all.jsonl`` byte for byte from train then dev):
- entity targets: mentions of the type whose start offset lies in the abstract (>= len(title)+1),
  unique surface strings (case-sensitive) in order of first appearance;
- relation targets: one line per CID row in file order; each side is the text of the first mention
  (title or abstract, file order) whose first MeSH id is that id, or ``None`` if there is none;
- order: per document its chemical then disease example; then all relation examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from preprocessing.errors import EXIT_BAD_DATA, EXIT_USAGE
from preprocessing.task import build_prompt, format_entities, format_relations


@dataclass
class Mention:
    start: int
    text: str
    type: str
    ids: list[str]


@dataclass
class Document:
    pmid: str
    title: str = ""
    abstract: str = ""
    mentions: list[Mention] = field(default_factory=list)
    relations: list[tuple[str, str]] = field(default_factory=list)


def read_pubtator(path: Path) -> list[Document]:
    """Parse a PubTator file; a malformed line raises ValueError naming file and line."""
    docs: list[Document] = []
    by_pmid: dict[str, Document] = {}

    def doc_for(pmid: str) -> Document:
        if pmid not in by_pmid:
            by_pmid[pmid] = Document(pmid)
            docs.append(by_pmid[pmid])
        return by_pmid[pmid]

    with open(path, "rb") as handle:  # decoded line by line: an error names its line
        for lineno, raw_bytes in enumerate(handle, 1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = raw_bytes[err.start]
                raise ValueError(f"{path}:{lineno}: not UTF-8 (byte 0x{byte:02x})") from None
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if "|t|" in line.split("\t", 1)[0] or "|a|" in line.split("\t", 1)[0]:
                pmid, kind, text = line.split("|", 2)
                if kind == "t":
                    doc_for(pmid).title = text
                else:
                    doc_for(pmid).abstract = text
                continue
            cols = line.split("\t")
            try:
                if len(cols) >= 4 and cols[1] == "CID":
                    doc_for(cols[0]).relations.append((cols[2], cols[3]))
                elif len(cols) >= 6:
                    ids = [i for i in cols[5].split("|") if i != "-1"]
                    doc_for(cols[0]).mentions.append(Mention(int(cols[1]), cols[3], cols[4], ids))
                else:
                    raise ValueError(f"expected a mention or CID row, got {len(cols)} columns")
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}: {line[:120]!r}") from None
    return docs


def entity_names(doc: Document, mention_type: str) -> list[str]:
    abstract_start = len(doc.title) + 1
    seen: dict[str, None] = {}
    for m in doc.mentions:
        if m.type == mention_type and m.start >= abstract_start:
            seen.setdefault(m.text)
    return list(seen)


def relation_pairs(doc: Document) -> list[tuple[str, str]]:
    first_text: dict[str, str] = {}
    for m in doc.mentions:
        if m.ids:
            first_text.setdefault(m.ids[0], m.text)
    return [(first_text.get(c, "None"), first_text.get(d, "None")) for c, d in doc.relations]


def build_rows(docs: list[Document]) -> list[dict[str, str]]:
    rows = []
    for doc in docs:
        for task, mention_type in (("chemical", "Chemical"), ("disease", "Disease")):
            rows.append(
                {
                    "prompt": build_prompt(task, doc.abstract),
                    "completion": format_entities(entity_names(doc, mention_type)),
                }
            )
    for doc in docs:
        rows.append(
            {
                "prompt": build_prompt("relation", doc.abstract),
                "completion": format_relations(relation_pairs(doc)),
            }
        )
    return rows


def build_file(pubtator_paths: list[Path], out: Path) -> int:
    docs = [doc for path in pubtator_paths for doc in read_pubtator(path)]
    rows = build_rows(docs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return len(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pubtator", nargs="+", type=Path, metavar="PUBTATOR",
                        help="BC5CDR PubTator files: train, then dev")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="FILE")


def run(args: argparse.Namespace) -> int:
    missing = [path for path in args.pubtator if not path.is_file()]
    if missing:
        print(
            f"error: PubTator file(s) not found: {', '.join(map(str, missing))}. The BioCreative V "
            "CDR corpus (CDR_Data/CDR.Corpus.v010516/*.PubTator.txt) comes from BioCreative; "
            "pass CDR_TrainingSet.PubTator.txt then CDR_DevelopmentSet.PubTator.txt.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        n_rows = build_file(args.pubtator, args.out)
    except ValueError as err:  # names file and line
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(f"wrote {n_rows} rows to {args.out}")
    return 0
