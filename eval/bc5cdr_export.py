"""Predictions (the eval's JSONL rows) -> a PubTator file the official kit scores.

Rows are matched to gold documents by their abstract (the prompt holds it; whitespace runs are
collapsed as prepare's doc ids do). Per document, the predicted chemicals and diseases become
mention rows and the predicted influences CID rows:
- the names are the entity lists' and the relation lines' arguments (a relation often names a
  concept as the title does, which the entity lists, from the abstract, miss);
- every case-insensitive occurrence of a predicted name in title + abstract, bounded by
  non-alphanumeric characters, is a mention with its offsets, its type and the name's grounded
  id ('-1' when it has none); where occurrences overlap the longest wins (then the earliest), so
  'acute kidney injury' and 'kidney injury' never both claim one span;
- each parsed relation line whose chemical and disease both ground is a CID row; a composite id
  contributes its first id (the recipe's relation lines name a concept by its first id).
Title and abstract lines are copied from the gold file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from eval.ground import UNGROUNDED, Lexicon, abbreviations, ground
from preprocessing.bc5cdr import Document
from preprocessing.task import parse_items, parse_relation

NO_NAME = "None"


@dataclass
class Predicted:
    """What the rows of one document predict, in order of first appearance."""

    names: dict[str, list[str]] = field(default_factory=lambda: {"Chemical": [], "Disease": []})
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # task -> line of its row


def parse_answer(predicted: Predicted, task: str, answer: str) -> None:
    """Add one row's answer (list or relation lines) to the document's predictions."""
    if task == "relation":
        for item in parse_items(answer):
            pair = parse_relation(item, collapse_whitespace=True)
            if pair is not None and pair not in predicted.pairs:
                predicted.pairs.append(pair)
        return
    names = predicted.names["Chemical" if task == "chemical" else "Disease"]
    for item in parse_items(answer):
        if item not in names:
            names.append(item)


def occurrences(text: str, name: str) -> list[tuple[int, int]]:
    """(start, end) of each case-insensitive, word-bounded occurrence of name in text."""
    if not name.strip():
        return []
    spans = []
    for match in re.finditer(re.escape(name.strip()), text, re.IGNORECASE):
        start, end = match.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            spans.append((start, end))
    return spans


def _without_overlaps(candidates: list[tuple[int, int, str, str]]) -> list[tuple]:
    taken: list[tuple[int, int, str, str]] = []
    for span in sorted(candidates, key=lambda c: (c[0] - c[1], c[0], c[2])):
        if all(span[1] <= other[0] or other[1] <= span[0] for other in taken):
            taken.append(span)
    return sorted(taken)


def _mention_names(predicted: Predicted) -> list[tuple[str, str]]:
    """(type, name) of the entity lists, then of the relation arguments not in them: a relation
    line names its concepts too, and often as the title does (titles are not in the prompt)."""
    names = [(kind, name) for kind, names in predicted.names.items() for name in names]
    for chemical, disease in predicted.pairs:
        names += [("Chemical", chemical), ("Disease", disease)]
    # 'None' is the recipe's placeholder for an argument it could not name, not a name.
    return [item for item in dict.fromkeys(names) if item[1] != NO_NAME]


def document_rows(doc: Document, predicted: Predicted, lexicon: Lexicon) -> list[str]:
    """The PubTator lines of one document: title, abstract, mentions, CID rows."""
    text = f"{doc.title} {doc.abstract}"
    defined = abbreviations(text)
    candidates = {}
    for kind, name in _mention_names(predicted):
        concept = ground(lexicon, kind, name, defined)
        for start, end in occurrences(text, name):
            candidates.setdefault((start, end), (start, end, kind, concept))
    lines = [f"{doc.pmid}|t|{doc.title}", f"{doc.pmid}|a|{doc.abstract}"]
    for start, end, kind, concept in _without_overlaps(list(candidates.values())):
        shown = " ".join(text[start:end].split())  # one field: no tab inside
        lines.append(f"{doc.pmid}\t{start}\t{end}\t{shown}\t{kind}\t{concept}")
    cids: dict[tuple[str, str], None] = {}
    for chemical, disease in predicted.pairs:
        chemical_id = ground(lexicon, "Chemical", chemical, defined).split("|")[0]
        disease_id = ground(lexicon, "Disease", disease, defined).split("|")[0]
        if UNGROUNDED not in (chemical_id, disease_id):
            cids.setdefault((chemical_id, disease_id))
    lines += [f"{doc.pmid}\tCID\t{c}\t{d}" for c, d in cids]
    return lines


def export(docs: list[Document], predicted: dict[str, Predicted], lexicon: Lexicon) -> str:
    """The whole PubTator text for the documents in `docs` that have predictions."""
    blocks = [
        "\n".join(document_rows(doc, predicted[doc.pmid], lexicon))
        for doc in docs
        if doc.pmid in predicted
    ]
    return "".join(block + "\n\n" for block in blocks)
