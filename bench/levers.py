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
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    ensure_model,
    ensure_processed,
    environment,
    model_info,
    read_recipe,
    write_result,
)
from bench.options import add_common_options, failure, setup
from bench.steps import train_ours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser, warmup=5, steps=20)
    parser.add_argument(
        "--lever",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="a named lever and its recipe overrides (repeatable)",
    )


def _lever(ours: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    timing = ours["timing"]
    keys = ("real_tokens_per_s", "seconds_per_step", "peak_memory_gib", "losses")
    return {"overrides": overrides, "run_dir": ours["run_dir"], "kernels": ours["kernels"]} | {
        key: timing.get(key) for key in keys
    }


def run(args: argparse.Namespace) -> int:
    runner, results_dir = setup(args, "levers")  # fills in --recipe and the other defaults
    ensure_processed(args.data, args.processed)
    _, config = read_recipe(args.recipe)
    model = ensure_model(runner, config, args.processed, args.random_init)
    results: dict[str, Any] = {}
    for name, *overrides in [["recipe"], *args.lever]:
        try:
            ours = train_ours(runner, args, args.recipe, config, model, extra_overrides=overrides)
            results[name] = _lever(ours, overrides)
        except BenchError as error:
            results[name] = {"overrides": overrides, **failure(runner, name, error)}
        print(f"[levers] {name}: {results[name].get('real_tokens_per_s', 'failed')} real tokens/s")
    base = results["recipe"].get("real_tokens_per_s")
    for result in results.values():
        if base and result.get("real_tokens_per_s"):
            result["speed_vs_recipe"] = round(result["real_tokens_per_s"] / base, 3)
    data = {
        "benchmark": "levers",
        "smoke": args.smoke,
        **environment(),
        "recipe": args.recipe,
        "model": model_info(model),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "commands": runner.commands,
        "levers": results,
    }
    write_result(f"levers-{Path(args.recipe).stem}", data, results_dir, args.out_dir)
    return 0
