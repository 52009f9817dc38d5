"""`python -m bench data-phase --recipe tiny-cpu`: the data phase timed cold, then by a second
run on the same data that loads the tokenised rows the first one saved."""

from __future__ import annotations

import json

from conftest import REPO, SAMPLE, run_cli


def test_data_phase_smoke_times_a_cold_and_a_shared_run(tiny_model, tmp_path):
    out = tmp_path / "data-phase.json"
    result = run_cli(
        ["bench", "data-phase", "--recipe", "tiny-cpu", "--data", SAMPLE,
         "--processed", tmp_path / "processed", "--tries", "1", "--out", out],
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads(out.read_text("utf-8"))
    (only,) = report["tries"]
    assert all(only[label]["start_up_s"] > 0 for label in ("cold", "shared"))
    assert report["median"]["shared"]["data_s"] < report["median"]["cold"]["data_s"]
    logs = REPO / "bench" / "work" / "data-phase" / "try-0"
    assert "Loading prepared dataset from disk" not in (logs / "cold" / "axolotl.log").read_text()
    assert "Loading prepared dataset from disk" in (logs / "shared" / "axolotl.log").read_text()
