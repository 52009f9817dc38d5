"""Score a predictions JSONL (prompt, completion, prediction) -> metrics JSON.

Per-task and micro precision/recall/F1 against gold, strict and normalized.

The definition (README, "Scoring definition"), implemented with preprocessing.task's parsers:
- items: one line each, one leading bullet removed, empty lines skipped (task.parse_items);
- relation items are (chemical, disease) pairs (task.parse_relation); a line that does not parse
  is an item that never matches gold, counted under "format_errors";
- strict compares stripped items, normalized compares task.normalize(item) (both sides of a pair);
- normalized mode also reads a relation line with whitespace runs collapsed ("Chemical  X
  influences  disease  Y" parses); strict needs the template's single spaces;
- per example gold and prediction are sets; tp/fp/fn are summed over the rows of a task (micro),
  "micro" sums them over all three tasks, "macro_f1" is the mean of the per-task F1s of the tasks
  that have rows ("macro_tasks"; a task with no rows is reported in "rows", not averaged in);
- no rows at all is an error, not a score of zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocessing import files
from preprocessing.task import TASKS, normalize, parse_items, parse_relation, task_of

MODES = ("strict", "normalized")
REQUIRED_FIELDS = ("prompt", "completion", "prediction")


class InputError(ValueError):
    """A bad input row; the message names the file, the line and the problem."""


@dataclass
class RowResult:
    """One example compared in one mode: counts plus the items behind fp and fn (for reports)."""

    tp: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    @property
    def fp(self) -> int:
        return len(self.false_positives)

    @property
    def fn(self) -> int:
        return len(self.false_negatives)


def _item_sets(task: str, text: str, normalized: bool) -> tuple[set, set[str]]:
    """(comparable items, unparseable relation lines) of one answer, both as sets."""
    key = normalize if normalized else str.strip
    items, unparseable = set(), set()
    for item in parse_items(text):
        if task != "relation":
            items.add(key(item))
            continue
        pair = parse_relation(item, collapse_whitespace=normalized)
        if pair is None:
            unparseable.add(key(item))
        else:
            items.add((key(pair[0]), key(pair[1])))
    return items, unparseable


def _show(item: str | tuple[str, str]) -> str:
    return item if isinstance(item, str) else f"{item[0]} -> {item[1]}"


def compare_row(task: str, gold: str, prediction: str, normalized: bool) -> RowResult:
    """tp, false positives and false negatives of one example (sets: duplicates collapse)."""
    gold_items, gold_bad = _item_sets(task, gold, normalized)
    pred_items, pred_bad = _item_sets(task, prediction, normalized)
    # Unparseable lines are kept apart from parsed pairs so that they can never match, not even
    # an identical unparseable gold line.
    return RowResult(
        tp=len(pred_items & gold_items),
        false_positives=sorted(map(_show, pred_items - gold_items))
        + sorted(f"[unparseable] {line}" for line in pred_bad),
        false_negatives=sorted(map(_show, gold_items - pred_items))
        + sorted(f"[unparseable] {line}" for line in gold_bad),
    )


def count_unparseable(text: str, normalized: bool = False) -> tuple[int, int]:
    """(relation lines that do not parse, all relation lines) of one answer, duplicates counted;
    `normalized` parses as normalized scoring does (whitespace runs collapsed)."""
    items = parse_items(text)
    bad = sum(parse_relation(item, collapse_whitespace=normalized) is None for item in items)
    return bad, len(items)


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Precision, recall and F1 from counts; each is 0 when its denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def check_row(row: Any, where: str) -> str:
    """Validate one input row; return its task. `where` is 'file:line' for the error message."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in row:
            raise InputError(f"{where}: missing field {name!r}")
        if not isinstance(row[name], str):
            raise InputError(f"{where}: field {name!r} must be a string, not {row[name]!r:.60}")
    task = task_of(row["prompt"])
    if task is None:
        raise InputError(
            f"{where}: the prompt is none of the known tasks ({', '.join(TASKS)}): "
            f"{row['prompt'][:80]!r}..."
        )
    return task


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) of a JSONL file (preprocessing.files.read_jsonl); a bad or unreadable
    line is an InputError naming the file and the line."""
    try:
        return files.read_jsonl(path)
    except files.FileFormatError as error:
        raise InputError(str(error)) from None


def score_rows(rows: Iterable[dict], source: str = "<rows>") -> dict[str, Any]:
    """The metrics of rows with prompt, completion, prediction (numbered from 1 in errors)."""
    return _score([(f"{source}:{number}", row) for number, row in enumerate(rows, 1)])


def score_file(path: str | Path) -> dict[str, Any]:
    """Score a predictions JSONL file; errors name the file and its line."""
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: no rows to score (the file is empty)")
    return _score([(f"{path}:{number}", row) for number, row in rows])


def _score(rows: list[tuple[str, Any]]) -> dict[str, Any]:
    if not rows:
        raise InputError("no rows to score")
    tasks = [check_row(row, where) for where, row in rows]  # all rows valid before any counting
    counts = {mode: {task: [0, 0, 0] for task in TASKS} for mode in MODES}
    # Unparseable relation lines (duplicates counted) and all relation lines, per mode and side.
    errors = {
        mode: {"prediction": 0, "gold": 0, "prediction_lines": 0, "gold_lines": 0} for mode in MODES
    }
    for task, (_, row) in zip(tasks, rows, strict=True):
        for mode in MODES:
            result = compare_row(task, row["completion"], row["prediction"], mode == "normalized")
            total = counts[mode][task]
            total[0] += result.tp
            total[1] += result.fp
            total[2] += result.fn
            if task != "relation":
                continue
            for side, text in (("prediction", row["prediction"]), ("gold", row["completion"])):
                bad, lines = count_unparseable(text, mode == "normalized")
                errors[mode][side] += bad
                errors[mode][f"{side}_lines"] += lines

    with_rows = [task for task in TASKS if task in tasks]
    metrics: dict[str, Any] = {}
    for mode in MODES:
        per_task = {task: prf(*counts[mode][task]) for task in TASKS}
        micro = prf(*(sum(counts[mode][task][i] for task in TASKS) for i in range(3)))
        metrics[mode] = {
            "per_task": per_task,
            "micro": micro,
            "macro_f1": sum(per_task[task]["f1"] for task in with_rows) / len(with_rows),
            "macro_tasks": with_rows,
            "format_errors": errors[mode],
        }
    metrics["format_errors"] = errors["strict"]  # the template's own rule, as reports show it
    metrics["rows"] = {task: tasks.count(task) for task in TASKS}
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path, help="JSONL with prompt, completion, prediction")
    parser.add_argument("--out", type=Path, help="also write the metrics JSON here")


def run(args: argparse.Namespace) -> int:
    from preprocessing.files import atomic_write_text

    try:
        if args.out is not None and args.out.is_dir():
            raise InputError(f"--out {args.out}: is a directory; name a file to write")
        metrics = score_file(args.predictions)
        text = json.dumps(metrics, indent=2)
        if args.out:
            atomic_write_text(args.out, text + "\n")
    except (InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    for task, count in metrics["rows"].items():
        if not count:
            print(f"note: no {task} rows; {task} is left out of macro F1", file=sys.stderr)
    return 0
