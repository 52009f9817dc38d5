"""Our eval's decoding steps at batch 1 and 256, timed and profiled.

-> bench/results/profile-generate.json (the measuring module: bench/profile_generate.py)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import (
    write_result,
)
from bench.options import (
    add_common_options,
    setup,
)
from bench.steps import (
    measure_on_run,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser, batch_sizes=[1, 256], new_tokens=32, kv_caches=["static", "dynamic"])
    parser.add_argument("--run", type=Path, help="run to load (default: newest of --recipe)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="rows per batch (1 256)")
    parser.add_argument("--new-tokens", type=int, help="decoding steps per generate call (32)")
    parser.add_argument(
        "--kv-caches",
        nargs="+",
        choices=["static", "dynamic"],
        help="KV caches to profile (static dynamic; eval generate uses static)",
    )


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "profile-generate")
    result = measure_on_run(
        args, run, "profile-generate", "bench.profile_generate", "--batch-sizes", *args.batch_sizes,
        "--new-tokens", args.new_tokens, "--kv-caches", *args.kv_caches,
    )  # fmt: skip
    write_result("profile-generate", result, results, args.out_dir)
    for size, batch in result["batches"].items():
        prof = batch["profile"]
        syncs = prof["host"]["synchronizations"]["calls_per_step"]
        print(f"batch {size}: {batch['decode_ms_per_step']} ms/step, GPU busy "
              f"{prof['gpu_busy_share']}, {prof['host_ops_per_step']} host ops/step, "
              f"{syncs} syncs/step")  # fmt: skip
    return 0
