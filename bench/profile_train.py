"""torch.profiler over a few of our recipe's steps: where the time goes.

-> bench/results/profile.json (the summary: bench/profile.py)
"""

from __future__ import annotations

import argparse
import json

from bench.common import (
    REPO,
    BenchError,
    ensure_model,
    ensure_processed,
    environment,
    model_info,
    read_recipe,
    write_result,
)
from bench.options import (
    VALIDATION_ROWS_HELP,
    add_common_options,
    setup,
)
from bench.steps import (
    train_ours,
    validation_subset,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser, steps=3)
    parser.add_argument("--validation-rows", type=int, default=16, help=VALIDATION_ROWS_HELP)


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "profile")
    ensure_processed(args.data, args.processed)
    _, config = read_recipe(args.recipe)
    model = ensure_model(run, config, args.processed, args.random_init)
    env = environment()
    extra = validation_subset(config, args.processed, args.validation_rows)
    ours = train_ours(run, args, args.recipe, config, model, extra_overrides=extra,
                      env={"BENCH_PROFILE_STEPS": str(args.steps)})  # fmt: skip
    profile_json = REPO / ours["run_dir"] / "bench_profile.rank0.json"
    if not profile_json.is_file():
        raise BenchError(f"{profile_json} missing: the profiler did not finish its window")
    profile = json.loads(profile_json.read_text("utf-8"))
    result = {
        "benchmark": "profile",
        "smoke": args.smoke,
        **env,
        "recipe": args.recipe,
        "model": model_info(model),
        "validation_rows": args.validation_rows,
        "commands": run.commands,
        "config": ours["config"],
        "kernels": ours["kernels"],
        "timing_under_profiler": ours["timing"],
        "profile": profile,
    }
    write_result("profile", result, results, args.out_dir)
    print(
        f"{profile['wall_ms_per_step']} ms/step wall, GPU busy {profile['gpu_busy_ms_per_step']} "
        f"ms ({profile['gpu_busy_share']}); kernels: {profile['kernel_ms_per_step_by_category']}"
    )
    return 0
