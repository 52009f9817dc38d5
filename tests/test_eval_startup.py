"""`python -m eval generate` from start to exit: its phase breakdown in metrics.json, the packages
its own process keeps out, and that neither changes an answer (inference/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, read_jsonl, run_cli
from test_generate import copy_run

from bench.eval_vs_seed import command_phases
from eval.__main__ import main as eval_main

pytestmark = pytest.mark.slow

ARGS = ["--limit", "3", "--max-new-tokens", "6", "--batch-size", "2"]
PHASES = ("startup", "imports", "prepare", "load", "decode", "finish")


def _phases_add_up(phases: dict) -> None:
    parts = [phases[f"{name}_seconds"] or 0.0 for name in PHASES]
    assert all(part >= 0 for part in parts)
    # Consecutive phases, from the process's start (or the command's) to just before exit.
    assert sum(parts) == pytest.approx(phases["command_seconds"], abs=0.02)


def test_command_times_its_phases_and_keeps_unused_packages_out(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    result = run_cli(["eval", "generate", "--run", run, *ARGS], merge_stderr=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote " in result.stdout  # printed before the exit without teardown: flushed
    metrics = json.loads((run / "eval-limit3" / "metrics.json").read_text())
    timing = metrics["timing"]
    phases = timing["phases"]
    assert set(phases) == {f"{name}_seconds" for name in PHASES} | {"command_seconds"}
    assert phases["startup_seconds"] > 0  # the interpreter's start, from /proc
    assert phases["imports_seconds"] > 0 and phases["finish_seconds"] > 0
    _phases_add_up(phases)
    # The tiny model is not quantized: none of the three is needed.
    assert timing["kept_out_packages"] == ["sklearn", "scipy", "bitsandbytes", "torchao"]
    summary = [line for line in result.stderr.splitlines() if line.startswith("command ")]
    assert summary and "imports" in summary[-1] and "decode" in summary[-1]
    # bench eval carries the breakdown, plus the time to the exit it measured outside.
    carried = command_phases(metrics, phases["command_seconds"] + 0.5)
    assert carried["after_seconds"] == pytest.approx(0.5)
    assert carried["decode_seconds"] == phases["decode_seconds"]
    assert command_phases({"timing": {}}, 3.0) is None  # a record older than the phases

    # The same eval in this (test) process: same answers; nothing kept out of a process that is
    # not the command's own, and no start-up of its own to report.
    in_process = copy_run(tiny_run, tmp_path / "in-process")
    assert eval_main(["generate", "--run", str(in_process), *ARGS]) == 0
    out = in_process / "eval-limit3"
    assert [r["prediction"] for r in read_jsonl(out / "predictions.jsonl")] == [
        r["prediction"] for r in read_jsonl(run / "eval-limit3" / "predictions.jsonl")
    ]
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    assert timing["kept_out_packages"] == []
    assert timing["phases"]["startup_seconds"] is None
    _phases_add_up(timing["phases"])
    assert sys.modules.get("sklearn", "absent") is not None


def test_a_base_eval_keeps_them_out_too(tiny_model: Path, processed_sample: Path, tmp_path: Path):
    # The recipe's chat template comes through Axolotl, which imports transformers: the
    # packages must be kept out before that.
    args = ["--base", "tiny-cpu", "--processed", processed_sample, "--runs-dir", tmp_path, *ARGS]
    result = run_cli(["eval", "generate", *args], merge_stderr=False)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "tiny-cpu-base" / "eval-limit3" / "metrics.json").read_text())
    assert metrics["timing"]["kept_out_packages"] == ["sklearn", "scipy", "bitsandbytes", "torchao"]
    _phases_add_up(metrics["timing"]["phases"])


def _keep_out(model: Path | str, engine: str = "auto") -> list[str]:
    """keep_out_unused in a fresh process that calls itself the command's own."""
    code = (
        "import json, sys; from inference import startup; startup.own_process(); "
        "print(json.dumps(startup.keep_out_unused(sys.argv[1], sys.argv[2])))"
    )
    result = subprocess.run(
        [PYTHON, "-c", code, str(model), engine], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_quantized_or_unknown_checkpoint_keeps_the_quantization_packages(tmp_path: Path):
    plain, quantized = tmp_path / "plain", tmp_path / "quantized"
    for directory, config in (
        (plain, {"model_type": "llama"}),
        (quantized, {"model_type": "llama", "quantization_config": {"quant_method": "bnb"}}),
    ):
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(config))
    assert _keep_out(plain) == ["sklearn", "scipy", "bitsandbytes", "torchao"]
    assert _keep_out(quantized) == ["sklearn"]
    assert _keep_out("nobody/not-in-the-cache") == ["sklearn"]  # cannot tell: kept
    assert _keep_out(plain, engine="vllm") == []  # vLLM's imports are its own


def test_exit_without_teardown_ends_with_an_idle_thread_pool_alive():
    """An idle ThreadPoolExecutor worker is a non-daemon thread: the interpreter wakes it through
    threading's exit hooks before waiting for threads; so must we."""
    code = (
        "from concurrent.futures import ThreadPoolExecutor; "
        "from preprocessing.process_exit import exit_without_teardown; "
        "pool = ThreadPoolExecutor(1); print(pool.submit(lambda: 'pool ran').result()); "
        "exit_without_teardown(0)"
    )
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "pool ran\n"), result.stderr


def test_exit_without_teardown_keeps_the_status_the_output_and_the_exit_handlers():
    code = (
        "import atexit, threading, time; "
        "from preprocessing.process_exit import exit_without_teardown; "
        "atexit.register(print, 'handler ran'); "
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start(); "
        "print('buffered', end=''); exit_without_teardown(3)"
    )
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "bufferedthread done\nhandler ran\n"
