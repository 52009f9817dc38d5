"""Our recipe on 1 GPU vs on --gpus N (DeepSpeed ZeRO-2 and/or plain DDP).

-> bench/results/scaling.json
"""

from __future__ import annotations

import argparse
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
from bench.options import (
    TARGETS,
    VALIDATION_ROWS_HELP,
    add_common_options,
    failure,
    ratio,
    setup,
)
from bench.steps import (
    train_ours,
    validation_subset,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--validation-rows", type=int, help=VALIDATION_ROWS_HELP)
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=["zero2", "ddp"],
        default=["zero2"],
        help="multi-GPU runs to make: zero2 (the launcher's DeepSpeed ZeRO-2, default), ddp",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    run, results = setup(args, "scaling")
    if not args.smoke and torch.cuda.device_count() < args.gpus:
        raise BenchError(f"--gpus {args.gpus} but this machine has {torch.cuda.device_count()}")
    ensure_processed(args.data, args.processed)
    _, config = read_recipe(args.recipe)
    model = ensure_model(run, config, args.processed, args.random_init)
    env = environment()
    extra = validation_subset(config, args.processed, args.validation_rows)
    # The launcher's own multi-GPU choice (DeepSpeed ZeRO-2) and plain DDP, each against 1 GPU.
    strategies = {"zero2": [], "ddp": ["deepspeed=null"]}
    runs = {"1": train_ours(run, args, args.recipe, config, model, gpus=1, extra_overrides=extra)}
    failed: dict[str, Any] = {}
    if not args.smoke:
        for name in args.strategies:
            try:
                runs[f"{args.gpus}-{name}"] = train_ours(
                    run, args, args.recipe, config, model, gpus=args.gpus,
                    extra_overrides=[*extra, *strategies[name]],
                )  # fmt: skip
            except Exception as err:  # one strategy failing must not hide the other's result
                failed[f"{args.gpus}-{name}"] = failure(run, name, err)
    one = runs["1"]["timing"]["real_tokens_per_s"]
    speedups = {
        key: ratio(r["timing"]["real_tokens_per_s"], one, 3)
        for key, r in runs.items()
        if key != "1"
    }
    best = max(speedups, key=lambda k: speedups[k] or 0) if speedups else None
    speedup = speedups.get(best)
    gpus = args.gpus if best else 1
    result = {
        "benchmark": "scaling",
        "smoke": args.smoke,
        **env,
        "recipe": args.recipe,
        "model": model_info(model),
        "validation_rows": args.validation_rows,
        "commands": run.commands,
        "runs": runs,
        "failed": failed,
        "gpus": gpus,
        "speedup_by_strategy": speedups,
        "best_strategy": best,
        "speedup": speedup,
        "efficiency": round(speedup / gpus, 3) if speedup else None,
        "note": "Each GPU keeps the recipe's micro-batch and accumulation: the global batch "
        "grows with the GPU count. zero2 = the launcher's DeepSpeed ZeRO-2 config; "
        "ddp = --override deepspeed=null (plain DistributedDataParallel).",
        "targets": {
            "speedup_at_least": TARGETS["scaling_2_gpus"],
            "speedup_met": (speedup or 0) >= TARGETS["scaling_2_gpus"],
        },
    }
    write_result("scaling", result, results, args.out_dir)
    print(f"{args.gpus} GPUs: {speedups} x one GPU; failed: {sorted(failed) or 'none'}")
    return 1 if failed else 0
