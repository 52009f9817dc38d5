"""The comparable setting: train on BC5CDR training documents, test on a held-out set by PMID.

``prepare_comparable(train, test, out_dir)`` builds the instruction rows of the training
PubTator file(s) and of the held-out file(s) with the recipe's own rules (preprocessing.bc5cdr),
writes them beside ``out_dir`` (``<out_dir>.instructions.jsonl``, training documents first),
and runs ``prepare`` on
it with the held-out documents as the test split: every one of them, and nothing else. The
remaining documents are split 90/10 into train and validation by abstract. The official
evaluation then scores the test split's predictions against the held-out PubTator file
(``python -m eval bc5cdr ... --pubtator TEST --lexicon-from TRAIN``), which makes the numbers
comparable with published BC5CDR results, with one caveat: the recipe's prompts hold the
abstract only, while the official gold also annotates the title.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from preprocessing.bc5cdr import Document, build_rows, read_pubtator
from preprocessing.errors import EXIT_BAD_DATA, EXIT_USAGE, PrepareError
from preprocessing.prepare import doc_id_of, prepare
from preprocessing.report import summary
from preprocessing.task import DEFAULT_SYSTEM_PROMPT


def instructions_path(out_dir: Path) -> Path:
    """The rows built from the PubTator files: beside ``out_dir``, not in it (prepare replaces
    its output directory whole), e.g. data/processed-comparable.instructions.jsonl."""
    return out_dir.with_name(f"{out_dir.name}.instructions.jsonl")


class OverlapError(ValueError):
    """A held-out document is also a training document (by PMID or by abstract)."""


def _read(paths: list[Path]) -> list[tuple[Path, Document]]:
    return [(path, doc) for path in paths for doc in read_pubtator(Path(path))]


def _check_apart(train: list[tuple[Path, Document]], test: list[tuple[Path, Document]]) -> None:
    by_pmid = {doc.pmid: path for path, doc in train}
    by_text = {doc_id_of(doc.abstract): (path, doc.pmid) for path, doc in train}
    for path, doc in test:
        if doc.pmid in by_pmid:
            raise OverlapError(f"PMID {doc.pmid} is in {path} (test) and {by_pmid[doc.pmid]}")
        other = by_text.get(doc_id_of(doc.abstract))
        if other is not None:
            raise OverlapError(
                f"{path}: PMID {doc.pmid} has the abstract of PMID {other[1]} in {other[0]}"
            )


def prepare_comparable(
    train: list[Path],
    test: list[Path],
    out_dir: str | Path,
    seed: int = 42,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    keep_none_relations: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write the comparable setting's splits to ``out_dir``; returns prepare's manifest plus
    a "comparable" block (the PubTator files and the held-out PMIDs)."""
    out_dir = Path(out_dir)
    train_docs, test_docs = _read(train), _read(test)
    _check_apart(train_docs, test_docs)
    rows = build_rows([doc for _, doc in train_docs + test_docs])
    instructions = instructions_path(out_dir)
    instructions.parent.mkdir(parents=True, exist_ok=True)
    instructions.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    manifest = prepare(
        instructions,
        out_dir,
        seed=seed,
        system_prompt=system_prompt,
        keep_none_relations=keep_none_relations,
        show_progress=show_progress,
        test_doc_ids={doc_id_of(doc.abstract) for _, doc in test_docs},
    )
    manifest["comparable"] = {
        "train_pubtator": [str(path) for path in train],
        "test_pubtator": [str(path) for path in test],
        "train_documents": len(train_docs),
        "test_documents": len(test_docs),
        "test_pmids": [doc.pmid for _, doc in test_docs],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from preprocessing.prepare_command import add_split_options

    parser.add_argument(
        "--train",
        type=Path,
        nargs="+",
        required=True,
        metavar="PUBTATOR",
        help="training PubTator file(s): train and validation come from them",
    )
    parser.add_argument(
        "--test",
        type=Path,
        nargs="+",
        required=True,
        metavar="PUBTATOR",
        help="held-out PubTator file(s): exactly their documents are the test "
        "split; the rows go beside DIR (DIR.instructions.jsonl)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_split_options(parser)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    missing = [path for path in [*args.train, *args.test] if not path.is_file()]
    if missing:
        print(f"error: PubTator file(s) not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        manifest = prepare_comparable(
            args.train,
            args.test,
            args.out,
            seed=args.seed,
            system_prompt=args.system_prompt,
            keep_none_relations=args.keep_none_relations,
        )
    except PrepareError as err:  # missing, unusable or bad input: the message says which
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except ValueError as err:  # malformed PubTator, a document on both sides
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(summary(manifest, args.out))
    block = manifest["comparable"]
    print(
        f"comparable setting: {block['test_documents']} held-out documents are the test split; "
        f"train + validation come from {block['train_documents']} training documents"
    )
    return 0
