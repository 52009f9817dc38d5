"""Time a training run's data phase on CPU: Axolotl's start-up, then its config checks,
tokenisation and packing estimate, with the recipe's tokenizer built locally (no download).

Each try gives the data a new tokenised-data entry (a copy of the processed splits, an empty HF
datasets cache) and runs Axolotl twice: "cold" tokenises and saves, "shared" is the next run on
the same data, which loads what the first saved (training/prepared_cache.py). Axolotl is stopped
once the data phase has ended: the model itself is never loaded (4-bit needs a GPU anyway).
Results: bench/work/data-phase.json (figures are quoted in bench/results/NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import WORK, BenchError, arch_for, ensure_processed, environment, read_recipe
from bench.common import shown as shown_command
from preprocessing.files import REPO, atomic_write_json, repo_relative
from training.build_model import TINY_OUT, build_tiny
from training.phases import MARKS_FILE, PhaseMarks

DATA_MARK = "data: config checks + tokenise + pack"
CPU_OVERRIDES = ["bf16=false", "tf32=false"]  # the recipe's GPU precision settings refuse a CPU
TINY_LAYERS = {  # the tokenizer dir's config.json: Axolotl reads the model type, not weights
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default="llama3b-qlora")
    parser.add_argument("--data", type=Path, default=Path("data/both_rel_instruct_all.jsonl"))
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--tries", type=int, default=2)
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="also set this config key (e.g. dataset_num_proc=0)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=WORK / "data-phase.json")


def tokenizer_dir(base_model: str, work: Path) -> Path:
    """The base model's tokenizer, built from its architecture file, beside a config.json of the
    same architecture shrunk to one small layer (Axolotl's data phase reads no weights)."""
    from training.build_model import build_tokenizer

    if (REPO / base_model).is_dir():  # a local model (tiny-cpu's): its own tokenizer and config
        return REPO / base_model
    arch_path = arch_for(base_model)
    out = work / f"{arch_path.stem}-tokenizer"
    if not (out / "config.json").is_file():
        build_tokenizer(arch_path, out)
        config = {**json.loads(arch_path.read_text("utf-8"))["config"], **TINY_LAYERS}
        atomic_write_json(out / "config.json", config)
    return out


def axolotl_data_phase(config_path: Path, run_dir: Path) -> dict[str, float]:
    """Run Axolotl on ``config_path`` until its data phase ends: seconds of start-up and data."""
    env = {
        **os.environ, "CUDA_VISIBLE_DEVICES": "", "AXOLOTL_DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": tempfile.mkdtemp(dir=run_dir),
    }  # fmt: skip
    marks_path = run_dir / MARKS_FILE
    started = time.time()
    with (run_dir / "axolotl.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "axolotl.cli.train", str(config_path)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            while process.poll() is None and not _ended(marks_path, DATA_MARK):
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    marks = {m["phase"]: m["end"] for m in (PhaseMarks.read(marks_path) or {}).get("marks", [])}
    if DATA_MARK not in marks:
        raise BenchError(f"Axolotl ended before its data phase did: {run_dir / 'axolotl.log'}")
    start_up = marks["start-up: python + axolotl import"]
    data = marks[DATA_MARK] - start_up
    return {"start_up_s": round(start_up - started, 1), "data_s": round(data, 1)}


def _ended(marks_path: Path, phase: str) -> bool:
    data = PhaseMarks.read(marks_path)
    return bool(data) and any(m["phase"] == phase for m in data["marks"])


def one_try(recipe: str, processed: Path, tokenizer: Path, work: Path, overrides: list[str]):
    """Cold then shared, on a copy of the splits of its own (so its tokenised entry is new)."""
    from training.config import resolve_config, write_config

    recipe_file, recipe_config = read_recipe(recipe)
    copy = work / "processed"
    copy.mkdir(parents=True)
    for split in ("train.jsonl", "validation.jsonl"):
        shutil.copy2(REPO / processed / split, copy / split)
    result: dict[str, Any] = {}
    for label in ("cold", "shared"):
        run_dir = work / label
        config = resolve_config(
            recipe_config, run_dir, copy, 1, None, 1, repo_relative(tokenizer),
            CPU_OVERRIDES + overrides,
        )  # fmt: skip
        run_dir.mkdir(parents=True)
        write_config(config, run_dir / "config.yml", recipe_file)
        result[label] = axolotl_data_phase(run_dir / "config.yml", run_dir)
        print(f"  {label}: {result[label]}", file=sys.stderr, flush=True)
    result["command"] = shown_command(
        [sys.executable, "-m", "axolotl.cli.train", repo_relative(work / "cold" / "config.yml")]
    )
    return result


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run(args: argparse.Namespace) -> int:
    ensure_processed(args.data, args.processed)
    _, recipe_config = read_recipe(args.recipe)
    if recipe_config["base_model"] == repo_relative(TINY_OUT):
        build_tiny(TINY_OUT)
    root = WORK / "data-phase"
    shutil.rmtree(root, ignore_errors=True)
    tokenizer = tokenizer_dir(recipe_config["base_model"], WORK / "tokenizers")
    tries = []
    for index in range(args.tries):
        print(f"try {index + 1}/{args.tries}", file=sys.stderr, flush=True)
        tries.append(
            one_try(args.recipe, args.processed, tokenizer, root / f"try-{index}", args.override)
        )
    summary = {
        label: {
            key: round(statistics.median(t[label][key] for t in tries), 1)
            for key in tries[0][label]
        }
        for label in ("cold", "shared")
    }
    result = {
        "recipe": args.recipe, "overrides": args.override, "tokenizer": repo_relative(tokenizer),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores", "environment": environment(),
        "median": summary, "tries": tries,
    }  # fmt: skip
    atomic_write_json(args.out, result)
    print(json.dumps(summary), f"\nresults: {args.out}")
    return 0
