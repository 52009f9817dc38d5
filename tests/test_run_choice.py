"""`make eval` / `extract` / `serve` / `merge` without RUN=, and their CLIs without --run: say what
to pass and list the newest runs, instead of argparse's "expected one argument"."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import conftest
import pytest


def fake_runs(runs: Path, names: list[str]) -> None:
    """Run directories as the launcher leaves them (run.json), oldest first."""
    for age, name in enumerate(reversed(names)):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text(json.dumps({"recipe": name.rsplit("-", 2)[0]}))
        stamp = time.time() - 100 * (age + 1)
        os.utime(runs / name / "run.json", (stamp, stamp))
    (runs / "compare.md").write_text("not a run")


def run_in(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(conftest.REPO)}
    return subprocess.run(
        [conftest.PYTHON, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


NEWEST = ["tiny-cpu-20261201_120000", "llama3b-qlora-20261130_090000", "tiny-cpu-20261129_080000"]


@pytest.mark.parametrize(
    "args, target",
    [
        (["eval", "generate"], "eval"),
        (["eval", "generate", "--run"], "eval"),  # what make passed with RUN unset
        (["inference", "extract", "--input", "-"], "extract"),
        (["inference", "extract", "--run", "--input", "-"], "extract"),
        (["inference", "serve", "--port", "0"], "serve"),
    ],
)
def test_cli_without_a_run_lists_the_newest(tmp_path, args, target):
    fake_runs(tmp_path / "runs", NEWEST)
    result = run_in(tmp_path, args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "expected one argument" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: which run? pass RUN=runs/<dir> (make {target} RUN=runs/<dir>) or --run runs/<dir>"
    )
    assert lines[1] == "newest runs in runs/:"
    assert lines[2:] == [f"  make {target} RUN=runs/{name}" for name in NEWEST]


def test_no_runs_yet_says_how_to_make_one(tmp_path):
    result = run_in(tmp_path, ["eval", "generate"])
    assert result.returncode == 2
    assert "no runs in runs/ yet: train one first (make train, or make demo)" in result.stderr


@pytest.mark.parametrize("target", ["eval", "extract", "serve", "merge"])
def test_make_target_without_run(target):
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", target, f"PYTHON={conftest.PYTHON}", "RUN="],
        cwd=conftest.REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"error: which run? pass RUN=runs/<dir> (make {target} RUN=runs/<dir>)" in result.stderr
    assert "expected one argument" not in result.stderr and "Traceback" not in result.stderr
