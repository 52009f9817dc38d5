"""Match prediction rows to gold PubTator documents by their abstract, accounting for every row.

A row's abstract is the one in its prompt (preprocessing.task.parse_prompt), compared by
prepare's doc id (sha256 of the text with whitespace runs collapsed). Each matched row adds its
prediction to the document's predictions and its completion (the gold answer) to the document's
ceiling input. A second row of the same task for one document is an error naming both lines;
rows whose abstract is in no gold document are counted and listed (their line numbers), never
dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.bc5cdr_export import Predicted, parse_answer
from eval.score import InputError, check_row, read_jsonl
from preprocessing.bc5cdr import Document
from preprocessing.prepare import doc_id_of
from preprocessing.task import TASKS, parse_prompt

SHOWN_UNMATCHED = 10  # how many unmatched line numbers the summary lists


@dataclass
class Matched:
    predictions: dict[str, Predicted] = field(default_factory=dict)
    ceiling: dict[str, Predicted] = field(default_factory=dict)
    rows: int = 0
    unmatched_lines: list[int] = field(default_factory=list)

    def summary(self, gold_documents: int) -> dict[str, Any]:
        tasks = {task: 0 for task in TASKS}
        for predicted in self.predictions.values():
            for task in predicted.rows:
                tasks[task] += 1
        return {
            "gold_documents": gold_documents,
            "scored_documents": len(self.predictions),
            "rows": self.rows,
            "rows_matched": self.rows - len(self.unmatched_lines),
            "rows_per_task": tasks,
            "rows_unmatched": len(self.unmatched_lines),
            "unmatched_lines": self.unmatched_lines[:SHOWN_UNMATCHED],
        }


def match_rows(path: Path, docs: list[Document]) -> Matched:
    """Read and check every row of `path`, then file each under its gold document."""
    numbered = read_jsonl(path)
    if not numbered:
        raise InputError(f"{path}: no rows (the file is empty)")
    pmid_of = {doc_id_of(doc.abstract): doc.pmid for doc in docs}
    matched = Matched(rows=len(numbered))
    for number, row in numbered:
        task = check_row(row, f"{path}:{number}")
        pmid = pmid_of.get(doc_id_of(parse_prompt(row["prompt"])[1]))
        if pmid is None:
            matched.unmatched_lines.append(number)
            continue
        predicted = matched.predictions.setdefault(pmid, Predicted())
        if task in predicted.rows:
            raise InputError(
                f"{path}:{number}: a second {task} row for PMID {pmid} "
                f"(the first is line {predicted.rows[task]})"
            )
        predicted.rows[task] = number
        parse_answer(predicted, task, row["prediction"])
        parse_answer(matched.ceiling.setdefault(pmid, Predicted()), task, row["completion"])
    if not matched.predictions:
        raise InputError(
            f"{path}: none of its {len(numbered)} rows has the abstract of a gold document"
        )
    return matched


def _pmid_of_line(line: str) -> str:
    head = line.split("\t", 1)[0]
    return head.split("|", 1)[0] if "|" in head else head


def gold_subset(path: Path, matched: Matched) -> str:
    """The gold file's lines of the documents that have rows, blocks separated by a blank line."""
    keep = matched.predictions
    blocks: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\r\n")
            if line.strip() and _pmid_of_line(line) in keep:
                blocks.setdefault(_pmid_of_line(line), []).append(line)
    return "".join("\n".join(lines) + "\n\n" for lines in blocks.values())
