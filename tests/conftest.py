"""Shared fixtures: the tiny model, the processed sample data, one tiny training run.

Everything runs on CPU and offline: HF_HUB_OFFLINE=1 and AXOLOTL_DO_NOT_TRACK=1 for the whole
session (the hub test in tiny_run lifts the offline flag only for its own subprocess).
Session-scoped fixtures build each thing once; tests must not modify what they get.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SAMPLE = REPO / "data" / "sample" / "sample_instruct.jsonl"
SHARED_DATA = REPO.parent / "shared" / "data"
# Looks like a real token to anything that scans for one; tiny_run trains with it set.
FAKE_HF_TOKEN = "hf_" + "TinyRunFakeToken" + "x7Qz3kLm9PwR2vYb"


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: int = 900,
    merge_stderr: bool = True,
):
    """`python -m <args>` from the repo root; returns the CompletedProcess (text; stderr merged
    into stdout unless ``merge_stderr`` is False)."""
    return subprocess.run(
        [PYTHON, "-m", *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """models/built/tiny-llama (deterministic; reused when already built from the same data)."""
    from training.build_model import build_tiny

    return build_tiny()


@pytest.fixture(scope="session")
def processed_sample(tmp_path_factory) -> Path:
    """data/sample/sample_instruct.jsonl through `python -m preprocessing prepare`."""
    out = tmp_path_factory.mktemp("processed-sample")
    result = run_cli(["preprocessing", "prepare", SAMPLE, "--out", out], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_model, processed_sample, tmp_path_factory) -> Path:
    """One tiny-cpu training through the real entry point (4 steps, checkpoints at 2 and 4).

    It trains with a fake HF_TOKEN and HF_ENDPOINT on a closed local port: the run must warn,
    train locally and leave the token nowhere. The launcher's console output is kept next to
    the run directory, in <runs>/console.txt.
    """
    runs = tmp_path_factory.mktemp("runs")
    env = dict(os.environ)
    env.pop("HF_HUB_OFFLINE", None)  # let the launcher really try (and fail) to reach the hub
    env.update(HF_TOKEN=FAKE_HF_TOKEN, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    result = run_cli(
        [
            "training", "train", "tiny-cpu",
            "--data", SAMPLE,
            "--processed", processed_sample,
            "--runs-dir", runs,
            "--max-steps", "4",
            "--override", "save_steps=2",
            "--override", "eval_steps=2",
        ],
        env=env,
    )  # fmt: skip
    (runs / "console.txt").write_text(result.stdout, "utf-8")
    assert result.returncode == 0, result.stdout[-5000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the real instruction file and BC5CDR), or skip where it is absent."""
    if not (SHARED_DATA / "both_rel_instruct_all.jsonl").is_file():
        pytest.skip(f"{SHARED_DATA} not present (only on the project's own machines)")
    return SHARED_DATA


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
