"""`make eval LIMIT=N` writes its own eval-limit<N>/ and never replaces the run's full evaluation
(report, metrics, plot, model card) nor what compare shows for the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_generate import copy_run, generate

from eval.__main__ import main as eval_main

pytestmark = pytest.mark.slow


def snapshot(run: Path) -> dict[str, bytes]:
    files = [*sorted((run / "eval").iterdir()), run / "README.md"]
    return {path.relative_to(run).as_posix(): path.read_bytes() for path in files}


def test_limit_goes_to_its_own_dir_and_leaves_the_full_eval(tiny_run: Path, tmp_path: Path, capsys):
    run = copy_run(tiny_run, tmp_path)
    assert generate("--run", str(run)) == 0
    full = snapshot(run)
    assert json.loads(full["eval/metrics.json"])["rows_evaluated"] == 6
    assert eval_main(["compare", str(run.parent)]) == 0
    compare_before = (run.parent / "compare.md").read_text()
    capsys.readouterr()

    assert generate("--run", str(run), "--limit", "5") == 0
    out = capsys.readouterr().out
    assert f"wrote {run}/eval-limit5/" in out
    assert f"partial evaluation (--limit): {run}/eval/ and the model card are unchanged" in out
    assert snapshot(run) == full  # byte for byte: report, metrics, plot, predictions, card
    partial = json.loads((run / "eval-limit5" / "metrics.json").read_text())
    assert (partial["rows_evaluated"], partial["rows_in_split"]) == (5, 6)
    assert "Partial evaluation: the first 5 of 6" in (run / "eval-limit5" / "report.md").read_text()
    assert eval_main(["compare", str(run.parent)]) == 0
    assert (run.parent / "compare.md").read_text() == compare_before


def test_a_limit_covering_the_split_is_the_full_eval(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    assert generate("--run", str(run), "--limit", "50") == 0
    assert json.loads((run / "eval" / "metrics.json").read_text())["rows_evaluated"] == 6
    assert not list(run.glob("eval-limit*"))
