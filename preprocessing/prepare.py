"""Validate an instruction JSONL and split it by abstract into Axolotl chat rows.

``prepare(input, out_dir)`` reads the file line by line (bytes, decoded per line, so one bad line
never hides the rest), rejects bad rows with their physical line number, reports data-quality
findings, drops relation lines with a ``None`` argument (unless asked to keep them), splits
80/10/10 by abstract and writes:

  train.jsonl validation.jsonl test.jsonl   {"messages", "task", "doc_id", "prompt", "completion"}
  rejects.jsonl                             {"line", "reason", "raw"}
  repairs.jsonl                             {"line", "task", "dropped", "reason"}
  findings.jsonl                            {"line", "task", "kind", "detail"}
  manifest.json, report.md

The split is a pure function of the abstracts and the seed (sha256, no ``hash()``), so reruns are
byte-identical on any machine.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from preprocessing.checks import sniff_encoding
from preprocessing.errors import EncodingError, RejectedRowsError, TooLittleDataError
from preprocessing.errors import MissingInputError as MissingInputError  # for callers
from preprocessing.errors import PrepareError as PrepareError
from preprocessing.files import sha256_bytes, sha256_file
from preprocessing.findings import FINDING_KINDS, drop_none_relations, find_issues
from preprocessing.paths import check_output, discard, publish, read_input, staging_dir
from preprocessing.report import count_line, rejects_message, render_report
from preprocessing.report import summary as summary  # the CLI's
from preprocessing.split import split_abstracts, split_fixed_test
from preprocessing.task import (
    DEFAULT_SYSTEM_PROMPT,
    TASKS,
    parse_items,
    parse_prompt,
)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
OUTPUT_FILES: tuple[str, ...] = (
    *(f"{split}.jsonl" for split in SPLITS),
    "manifest.json",
)
HOW_TO_GET_DATA = (
    "Put your instruction JSONL at data/both_rel_instruct_all.jsonl (or pass its path), or build "
    "it from the BC5CDR corpus: make build-bc5cdr BC5CDR=path/to/CDR_Data (= python -m "
    "preprocessing build-bc5cdr CDR_TrainingSet.PubTator.txt CDR_DevelopmentSet.PubTator.txt "
    "--out data/both_rel_instruct_all.jsonl). To try the pipeline without it, use the synthetic "
    "sample: data/sample/sample_instruct.jsonl."
)
# Each split needs at least one abstract: an empty validation split crashes Axolotl's eval, an
# empty test split leaves nothing to score.
MIN_ABSTRACTS = len(SPLITS)


@dataclass
class Row:
    line: int
    task: str
    doc_id: str
    prompt: str
    completion: str
    repairs: list[dict[str, Any]] = field(default_factory=list)


def doc_id_of(abstract: str) -> str:
    """The abstract's id: sha256 of its text, whitespace runs collapsed so that trivially
    re-wrapped copies of one abstract still share an id (and a split)."""
    return sha256_bytes(" ".join(abstract.split()).encode("utf-8"))[:16]


def _abstract_key(prompt: str) -> str:
    parsed = parse_prompt(prompt)
    assert parsed is not None  # only validated rows get here
    return " ".join(parsed[1].split())


# ---- reading and validation -----------------------------------------------------------------


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _check_line(text: str, seen: dict[str, tuple[int, str]]) -> tuple[Row | None, str]:
    """One decoded, non-blank line -> (row, "") or (None, reason)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"not JSON: {err.msg} (column {err.colno})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (got {_json_type(obj)})"
    for key in ("prompt", "completion"):
        if key not in obj:
            return None, f"'{key}' missing"
        if not isinstance(obj[key], str):
            return None, f"'{key}' is not a string (got {_json_type(obj[key])})"
    prompt, completion = obj["prompt"], obj["completion"]
    if not prompt.strip():
        return None, "empty prompt"
    parsed = parse_prompt(prompt)
    if parsed is None:
        return None, "prompt matches none of the three tasks (chemical, disease, relation)"
    task, abstract = parsed
    if not abstract.strip():
        return None, f"{task} prompt with an empty abstract"
    for key in ("prompt", "completion"):
        if "\x00" in obj[key]:
            where = obj[key].index("\x00")
            return None, f"NUL character (\\u0000) in '{key}' at character {where}"
    if prompt in seen:
        first_line, first_completion = seen[prompt]
        same = "same completion" if completion == first_completion else "conflicting completion"
        return None, f"duplicate prompt of line {first_line} ({same})"
    return Row(0, task, doc_id_of(abstract), prompt, completion), ""


def read_rows(data: bytes, show_progress: bool = True) -> tuple[list[Row], list[dict], int]:
    """Validate every physical line: (kept rows, rejects, blank lines)."""
    rows: list[Row] = []
    rejects: list[dict[str, Any]] = []
    seen: dict[str, tuple[int, str]] = {}
    blank = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the final newline ends a line, it does not start one
        lines.pop()
    progress = tqdm(
        lines, desc="validating", unit=" lines", disable=None if show_progress else True
    )
    for number, raw in enumerate(progress, 1):
        raw = raw.removesuffix(b"\r")
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 BOM
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            reason = f"not UTF-8: byte 0x{raw[err.start]:02x} at byte {err.start + 1}"
            raw_text = raw.decode("utf-8", errors="backslashreplace")
            rejects.append({"line": number, "reason": reason, "raw": raw_text})
            continue
        if not text.strip():
            blank += 1
            continue
        row, reason = _check_line(text, seen)
        if row is None:
            rejects.append({"line": number, "reason": reason, "raw": text})
            continue
        row.line = number
        seen[row.prompt] = (number, row.completion)
        rows.append(row)
    return rows, rejects, blank


# ---- writing --------------------------------------------------------------------------------


def chat_row(row: Row, system_prompt: str) -> dict[str, Any]:
    """The training/eval row; an empty system prompt means no system turn (some chat templates,
    e.g. Gemma's, refuse one)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages = [
        *system,
        {"role": "user", "content": row.prompt},
        {"role": "assistant", "content": row.completion},
    ]
    return {
        "messages": messages,
        "task": row.task,
        "doc_id": row.doc_id,
        "prompt": row.prompt,
        "completion": row.completion,
    }


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return sha256_bytes(data)


# ---- entry points ---------------------------------------------------------------------------


def prepare(
    input_path: str | Path,
    out_dir: str | Path,
    seed: int = 42,
    allow_rejects: bool = False,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    keep_none_relations: bool = False,
    show_progress: bool = True,
    test_doc_ids: set[str] | None = None,
) -> dict[str, Any]:
    """Validate, repair, split and write ``out_dir``; returns the manifest. With
    ``test_doc_ids`` (doc ids of abstracts) those abstracts are the test split (split_fixed_test).

    Raises a PrepareError (one line, naming the file) for every problem the user can fix:
    MissingInputError if the input is absent, RejectedRowsError if lines were rejected and
    ``allow_rejects`` is off (then ``out_dir`` holds only rejects.jsonl, nothing a trainer would
    read), others for an unusable path, a file in another encoding, or too few abstracts. The
    directory is replaced as a whole, only once this run's output is complete.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    check_output(out_dir)
    data = read_input(input_path, HOW_TO_GET_DATA)
    _check_encoding(input_path, data)
    rows, rejects, blank = read_rows(data, show_progress)

    findings = [finding for row in rows for finding in find_issues(row)]
    if not keep_none_relations:
        for row in rows:
            drop_none_relations(row)
    repairs = [repair for row in rows for repair in row.repairs]

    by_split, doc_tasks, split_rule = _assign_splits(rows, seed, test_doc_ids)
    manifest = _manifest(input_path, data, rows, rejects, blank, by_split, doc_tasks)
    manifest.update(seed=seed, split=split_rule, system_prompt=system_prompt)
    manifest.update(keep_none_relations=keep_none_relations, repairs=len(repairs))
    manifest["findings"] = {
        kind: sum(f["kind"] == kind for f in findings) for kind in FINDING_KINDS
    }
    if not rejects or allow_rejects:
        _check_enough(input_path, manifest, len(doc_tasks))

    staging = staging_dir(out_dir)
    try:
        _write(staging / "rejects.jsonl", _jsonl(rejects))
        if rejects and not allow_rejects:
            publish(staging, out_dir)
            message = rejects_message(input_path, out_dir, manifest, rejects)
            raise RejectedRowsError(message, manifest)
        _write_outputs(staging, manifest, by_split, system_prompt, rejects, findings, repairs)
        publish(staging, out_dir)
    finally:
        discard(staging)  # a no-op once published
    return manifest


def _assign_splits(
    rows: list[Row], seed: int, test_doc_ids: set[str] | None
) -> tuple[dict[str, list[Row]], dict[str, set[str]], str]:
    """(rows by split, task set of every abstract, the split rule in words)."""
    doc_tasks: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        doc_tasks[row.doc_id].add(row.task)
    if test_doc_ids is None:
        assignment = split_abstracts(doc_tasks, seed)
        split_rule = "80/10/10 by abstract"
    else:
        assignment = split_fixed_test(doc_tasks, test_doc_ids, seed)
        split_rule = "named test abstracts; the others 90/10 train/validation by abstract"
    by_split: dict[str, list[Row]] = {split: [] for split in SPLITS}
    for row in rows:
        by_split[assignment[row.doc_id]].append(row)
    return by_split, doc_tasks, split_rule


def _check_encoding(input_path: Path, data: bytes) -> None:
    encoding = sniff_encoding(data)
    if encoding is not None:
        what, fix = encoding
        if fix.startswith("iconv"):
            fix = f"convert it: {fix} {input_path} > converted.jsonl"
        raise EncodingError(f"{input_path}: the file is {what}, not UTF-8 JSONL: {fix}")


def _write_outputs(
    staging: Path,
    manifest: dict[str, Any],
    by_split: dict[str, list[Row]],
    system_prompt: str,
    rejects: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    repairs: list[dict[str, Any]],
) -> None:
    """Everything but rejects.jsonl, manifest.json last (its sha256 list covers the rest)."""
    for split in SPLITS:
        records = [chat_row(row, system_prompt) for row in by_split[split]]
        manifest["files"][f"{split}.jsonl"] = _write(staging / f"{split}.jsonl", _jsonl(records))
    manifest["files"]["repairs.jsonl"] = _write(staging / "repairs.jsonl", _jsonl(repairs))
    manifest["files"]["findings.jsonl"] = _write(staging / "findings.jsonl", _jsonl(findings))
    report = render_report(manifest, rejects, findings, repairs)
    (staging / "report.md").write_text(report, "utf-8")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


def _manifest(
    input_path: Path,
    data: bytes,
    rows: list[Row],
    rejects: list[dict[str, Any]],
    blank: int,
    by_split: dict[str, list[Row]],
    doc_tasks: dict[str, set[str]],
) -> dict[str, Any]:
    """The counts of one run (seed, options, findings and files are added by the caller)."""
    docs = {split: {row.doc_id for row in by_split[split]} for split in SPLITS}
    # Overlap is measured on the abstracts' text itself, not on the ids the split was made from.
    texts = {split: {_abstract_key(row.prompt) for row in by_split[split]} for split in SPLITS}
    return {
        "input": {"path": input_path.as_posix(), "sha256": sha256_bytes(data), "bytes": len(data)},
        "seed": None,
        "split": None,
        "system_prompt": None,
        "keep_none_relations": None,
        "rows_in": len(rows) + len(rejects),
        "rows_kept": len(rows),
        "rows_rejected": len(rejects),
        "blank_lines": blank,
        "rows": {
            split: {
                **{task: sum(r.task == task for r in by_split[split]) for task in TASKS},
                "total": len(by_split[split]),
            }
            for split in SPLITS
        },
        "abstracts": {split: len(docs[split]) for split in SPLITS},
        "abstracts_by_task_set": {
            split: dict(
                sorted(
                    Counter(
                        "+".join(t for t in TASKS if t in doc_tasks[d]) for d in docs[split]
                    ).items()
                )
            )
            for split in SPLITS
        },
        "overlap": {
            "train/validation": len(texts["train"] & texts["validation"]),
            "train/test": len(texts["train"] & texts["test"]),
            "validation/test": len(texts["validation"] & texts["test"]),
        },
        "rejects": len(rejects),
        "repairs": None,
        "targets_emptied_by_repairs": sum(
            1 for row in rows if row.repairs and not parse_items(row.completion)
        ),
        "findings": {},
        "files": {},
    }


def _check_enough(input_path: Path, manifest: dict[str, Any], abstracts: int) -> None:
    """Stop before writing when a split would be empty (Axolotl fails on it much later)."""
    counts = count_line(manifest)
    if not manifest["rows_kept"]:
        what = "is empty" if not manifest["input"]["bytes"] else "has no rows to keep"
        blank = f", {manifest['blank_lines']} blank lines" if manifest["blank_lines"] else ""
        raise TooLittleDataError(f"{input_path}: {what} ({counts}{blank}): nothing to train on")
    if abstracts < MIN_ABSTRACTS:
        raise TooLittleDataError(
            f"{input_path}: only {abstracts} abstract(s) ({counts}); at least {MIN_ABSTRACTS} are "
            "needed, one each for train, validation and test"
        )


def is_stale(
    input_path: str | Path,
    out_dir: str | Path,
    seed: int | None = None,
    system_prompt: str | None = None,
    keep_none_relations: bool | None = None,
) -> bool:
    """True if ``out_dir`` lacks processed data or was built from other input bytes (or, where
    given, another seed / system prompt / None-relation setting) than ``input_path`` now holds."""
    out_dir = Path(out_dir)
    if not all((out_dir / name).is_file() for name in OUTPUT_FILES):
        return True
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text("utf-8"))
        recorded = manifest["input"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return True
    if not Path(input_path).is_file() or recorded != sha256_file(input_path):
        return True
    wanted = {
        "seed": seed,
        "system_prompt": system_prompt,
        "keep_none_relations": keep_none_relations,
    }
    return any(value is not None and manifest.get(key) != value for key, value in wanted.items())
