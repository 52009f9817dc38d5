"""Speed levers of a recipe side by side: the same optimizer steps with one setting changed each.

    python -m bench levers --random-init --lever no-dropout lora_dropout=0 \
        --lever compile torch_compile=true

Each lever is one real `python -m training train RECIPE --max-steps W+S` run with its overrides
(the first, `recipe`, with none), timed by the bench plugin over the S steps after W warm-up
steps: real tokens/s, seconds per optimizer step, peak memory, and the first logged losses (so a
lever that changes what is trained shows it). Writes bench/results/levers-<recipe>.json.
A lever that fails is recorded as failed; the others still run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    PLUGIN,
    BenchError,
    Runner,
    ensure_model,
    ensure_processed,
    environment,
    model_info,
    new_run_dirs,
    read_recipe,
    runs_of,
    write_result,
)
from bench.metrics import merge_ranks
from preprocessing.files import REPO, read_json, repo_relative


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default="llama3b-qlora")
    parser.add_argument("--data", type=Path, default=Path("data/both_rel_instruct_all.jsonl"))
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--random-init", action="store_true", help="random-init architecture build")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps (5)")
    parser.add_argument("--steps", type=int, default=25, help="timed optimizer steps (25)")
    parser.add_argument(
        "--lever",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="a named lever and its recipe overrides (repeatable)",
    )
    parser.add_argument("--out-dir", type=Path, help="also copy results + log here")


def _one(run: Runner, args: argparse.Namespace, model: str, overrides: list[str]) -> dict:
    recipe_path, config = read_recipe(args.recipe)
    plugins = [*(config.get("plugins") or []), PLUGIN]
    before = runs_of(args.recipe)
    cmd = [sys.executable, "-m", "training", "train", args.recipe, "--data", str(args.data),
           "--processed", str(args.processed), "--max-steps", str(args.warmup + args.steps),
           "--base-model", model, "--override", f"plugins={json.dumps(plugins)}"]  # fmt: skip
    for item in overrides:
        cmd += ["--override", item]
    seconds = run(cmd, env={"BENCH_WARMUP_STEPS": str(args.warmup)})
    created = new_run_dirs(args.recipe, before)
    if len(created) != 1:
        raise BenchError(f"expected one new run directory of {args.recipe}, found {created}")
    records = [read_json(p) for p in sorted(created[0].glob("bench_timing.rank*.json"))]
    if not records or None in records:
        raise BenchError(f"{created[0]}: no bench_timing.rank*.json (did the plugin load?)")
    window = merge_ranks(records)
    timing = records[0]
    return {
        "overrides": overrides,
        "run_dir": repo_relative(created[0]),
        "command_seconds": round(seconds, 1),
        "kernels": timing.get("kernels"),
        **window,
    }


def run(args: argparse.Namespace) -> int:
    name = f"levers-{Path(args.recipe).stem}"
    logs = [REPO / "bench" / "work" / "logs" / f"{name}.log"]
    if args.out_dir:
        logs.append(args.out_dir / f"{name}.log")
    runner = Runner(*logs)
    _, config = read_recipe(args.recipe)
    ensure_processed(args.data, args.processed)
    model = ensure_model(runner, config, args.processed, args.random_init)
    levers = [["recipe"], *args.lever]
    results: dict[str, Any] = {}
    for name_and_overrides in levers:
        lever, overrides = name_and_overrides[0], name_and_overrides[1:]
        try:
            results[lever] = _one(runner, args, model, overrides)
        except BenchError as error:
            results[lever] = {"overrides": overrides, "failed": str(error).splitlines()[0]}
        speed = results[lever].get("real_tokens_per_s", "failed")
        print(f"[levers] {lever}: {speed} real tokens/s", flush=True)
    base = results["recipe"].get("real_tokens_per_s")
    for result in results.values():
        if base and result.get("real_tokens_per_s"):
            result["speed_vs_recipe"] = round(result["real_tokens_per_s"] / base, 3)
    data = {
        "benchmark": "levers",
        **environment(),
        "recipe": args.recipe,
        "model": model_info(model),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "commands": runner.commands,
        "levers": results,
    }
    write_result(name, data, REPO / "bench" / "results", args.out_dir)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
