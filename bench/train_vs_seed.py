"""The seed's train.py vs our recipe through `python -m training train`, same GPU, data, model.

Same model shape and tokenizer, in one call -> bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json

from bench.common import (
    REPO,
    WORK,
    ensure_model,
    ensure_processed,
    environment,
    matmul_tflops,
    model_info,
    read_recipe,
    write_result,
)
from bench.options import (
    TARGETS,
    add_common_options,
    py,
    ratio,
    setup,
)
from bench.steps import (
    train_ours,
    utilisation,
)
from preprocessing.files import repo_relative


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "train")
    ensure_processed(args.data, args.processed)
    _, config = read_recipe(args.recipe)
    model = ensure_model(run, config, args.processed, args.random_init)
    env = environment()
    ceiling = matmul_tflops()
    seed_json = WORK / f"train-seed{'-smoke' if args.smoke else ''}.json"
    run(py("bench.seed_baseline", "--model", model, "--processed", args.processed, "--warmup",
           args.warmup, "--steps", args.steps, "--out", repo_relative(seed_json)))  # fmt: skip
    seed = json.loads(seed_json.read_text("utf-8"))
    ours = train_ours(run, args, args.recipe, config, model)
    info = model_info(model)
    s, o = seed["timing"], ours["timing"]
    ratios = {
        "real_tokens_per_s": ratio(o["real_tokens_per_s"], s["real_tokens_per_s"]),
        "examples_per_s": ratio(
            o["examples_per_step"] / o["seconds_per_step"],
            s["examples_per_step"] / s["seconds_per_step"],
        ),
        "projected_seconds": ratio(o["projected_seconds"], s["projected_seconds"], 3),
        "peak_memory": ratio(o["peak_memory_gib"], s["peak_memory_gib"], 3),
    }
    result = {
        "benchmark": "train",
        "smoke": args.smoke,
        **env,
        "matmul_bf16_tflops": ceiling,
        "model": info,
        "data": {
            "processed": repo_relative(args.processed),
            "train_rows": sum(1 for _ in (REPO / args.processed / "train.jsonl").open()),
        },
        "commands": run.commands,
        "seed": seed,
        "ours": ours,
        "ratios_ours_over_seed": ratios,
        "matmul_utilisation": {
            "convention": "6 x parameters x real tokens/s over the measured bf16 matmul rate",
            "seed": utilisation(info.get("parameters"), s["real_tokens_per_s"], ceiling),
            "ours": utilisation(info.get("parameters"), o["real_tokens_per_s"], ceiling),
        },
        "targets": {
            "speedup_at_least": TARGETS["train_speedup"],
            "speedup_met": (ratios["real_tokens_per_s"] or 0) >= TARGETS["train_speedup"],
            "peak_memory_not_above_seed": (ratios["peak_memory"] or 0) <= 1
            if ratios["peak_memory"]
            else None,
            "three_epochs_at_most_s": TARGETS["train_3_epochs_s"],
            "three_epochs_met": (o["projected_seconds"] or 1e9) <= TARGETS["train_3_epochs_s"],
        },
    }
    write_result("train", result, results, args.out_dir)
    print(
        f"seed {s['real_tokens_per_s']} tok/s, ours {o['real_tokens_per_s']} tok/s: "
        f"{ratios['real_tokens_per_s']}x; 3 epochs ours {o['projected_seconds']} s, "
        f"seed {s['projected_seconds']} s"
    )
    return 0
