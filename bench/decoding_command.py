"""Our eval's decoding strategies side by side, same run and split.

In rounds (dynamic or static KV cache) vs in one round vs transformers' continuous batching
-> bench/results/decoding.json (the measuring module: bench/decoding.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import (
    write_result,
)
from bench.options import (
    add_common_options,
    ratio,
    setup,
)
from bench.steps import (
    measure_on_run,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.decoding import STRATEGIES

    add_common_options(parser, strategies=list(STRATEGIES), limit=None)
    parser.add_argument("--run", type=Path, help="run to load (default: newest of --recipe)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES)
    parser.add_argument("--limit", type=int, help="first N test rows (default: whole split)")


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "decoding")
    limit = ["--limit", args.limit] if args.limit else []
    result = measure_on_run(
        args, run, "decoding", "bench.decoding", "--strategies", *args.strategies, *limit,
        keep_partial=True,
    )  # fmt: skip
    first = result["strategies"][result["first_strategy"]]["seconds"]
    for measured in result["strategies"].values():
        measured["seconds_vs_first"] = ratio(measured["seconds"], first, 2)
    write_result("decoding", result, results, args.out_dir)
    for name, measured in result["strategies"].items():
        print(f"{name}: {measured['seconds']} s, {measured['answers_equal_to_first_strategy']} "
              f"of {result['rows']} answers as {result['first_strategy']}")  # fmt: skip
    return 0
