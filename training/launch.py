"""Running Axolotl: its command line, the GPUs it sees, and the one subprocess tee of the project
(all output to a log file with every secret scrubbed, the console shown what matters)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from preprocessing.files import REPO
from training.console import Console


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def axolotl_command(config_path: Path, gpus: int) -> list[str]:
    if gpus <= 1:
        return [sys.executable, "-m", "axolotl.cli.train", str(config_path)]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(gpus), "--num_machines", "1", "--dynamo_backend", "no",
        "-m", "axolotl.cli.train", str(config_path),
    ]  # fmt: skip


def visible_devices(gpus: int, current: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a run on ``gpus`` GPUs: the first ``gpus`` of the ones the user
    made visible (all of the machine's when unset). A single process that sees several GPUs
    spreads a 4-bit model over them (device_map "auto"), which Axolotl's LoRA kernels refuse
    ("mat2 is on cuda:1"); accelerate's N processes likewise use devices 0..N-1."""
    if current is not None and not current.strip():
        return current  # GPUs hidden on purpose: leave them hidden
    ids = [d.strip() for d in current.split(",") if d.strip()] if current else []
    return ",".join((ids or [str(i) for i in range(gpus)])[: max(gpus, 1)])


def tee(
    command: list[str],
    log_path: Path,
    secrets: list[str],
    env: dict[str, str] | None = None,
    show: Callable[[str], None] | None = None,
) -> int:
    """Run ``command`` from the repo root; every line of its output (stderr merged), scrubbed of
    ``secrets``, is appended to ``log_path`` and passed to ``show``; returns the exit code.
    Ctrl-C is passed on to the child (SIGINT, then kill after 30 s) and re-raised."""
    with log_path.open("a", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = scrub(line, secrets)
                if show is not None:
                    show(line)
                log.write(line)
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def run_logged(
    command: list[str],
    log_path: Path,
    secrets: list[str],
    gpus: int | None = None,
    verbose: bool = False,
) -> int:
    """Run Axolotl's ``command``: all its output (scrubbed) goes to ``log_path``, the console
    gets what training/console.py lets through (all of it with ``verbose``); its exit code."""
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(gpus, env.get("CUDA_VISIBLE_DEVICES"))
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("WANDB_DIR", str(log_path.parent.resolve()))  # W&B files stay in the run
    env["PYTHONUNBUFFERED"] = "1"
    console = Console(verbose=verbose)
    try:
        return tee(command, log_path, secrets, env=env, show=console.feed)
    finally:
        console.close()


def trainer_runtime(log_path: Path) -> float | None:
    """Seconds of the Trainer's loop as it reported them (summed over resumed sessions)."""
    found = re.findall(r"'train_runtime': '?([\d.]+)", log_path.read_text("utf-8", "replace"))
    return round(sum(float(value) for value in found), 1) if found else None


def scrub_run_dir(run_dir: Path, secrets: list[str]) -> list[Path]:
    """Last line of defence: no file under the run dir may hold a token. Text files are
    rewritten; anything else holding one is reported (returned)."""
    leaks: list[Path] = []
    needles = [s.encode() for s in secrets if s]
    if not needles:
        return leaks
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.stat().st_size > 200_000_000:
            continue
        data = path.read_bytes()
        if not any(n in data for n in needles):
            continue
        try:
            path.write_text(scrub(data.decode("utf-8"), secrets), "utf-8")
        except UnicodeDecodeError:
            leaks.append(path)
    return leaks
