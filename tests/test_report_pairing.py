"""Evals are set side by side only when scored on the same test file (sha256) and rows."""

from __future__ import annotations

import json
from pathlib import Path

from eval.report import base_metrics_for, same_test, unpaired_base_note

SHA = "ab" * 32
ROWS = {"chemical": 2, "disease": 2, "relation": 2}


def metrics(**changes: object) -> dict:
    return {"split_sha256": SHA, "rows_evaluated": 6, "rows": dict(ROWS)} | changes


def test_same_test_needs_the_same_file_and_rows() -> None:
    assert same_test(metrics(), metrics())
    assert not same_test(metrics(), metrics(split_sha256="cd" * 32))
    assert not same_test(metrics(), metrics(rows_evaluated=5))
    assert not same_test(metrics(), metrics(rows=ROWS | {"relation": 1}))
    assert not same_test(metrics(split_sha256=None), metrics(split_sha256=None))  # unknown


def test_a_base_eval_is_paired_only_on_the_same_test(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "llama3b-qlora-20260101_000000"
    tuned = metrics(kind="fine-tuned", run=str(run), recipe="llama3b-qlora")
    assert base_metrics_for(tuned) is None and unpaired_base_note(tuned) is None  # no base yet
    base_file = tmp_path / "runs" / "llama3b-qlora-base" / "eval" / "metrics.json"
    base_file.parent.mkdir(parents=True)
    base_file.write_text(json.dumps(metrics(kind="base")))
    assert base_metrics_for(tuned) == metrics(kind="base")
    assert unpaired_base_note(tuned) is None
    base_file.write_text(json.dumps(metrics(kind="base", rows_evaluated=3)))
    assert base_metrics_for(tuned) is None
    assert "another test file or other rows" in unpaired_base_note(tuned)
