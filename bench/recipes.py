"""Every GPU recipe: train >= 20 steps, then `eval generate` on the result.

-> bench/results/recipe-<name>.json each, written as each recipe ends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    drop_model,
    ensure_model,
    ensure_processed,
    environment,
    gpu_recipes,
    model_info,
    read_recipe,
    write_result,
)
from bench.options import (
    VALIDATION_ROWS_HELP,
    add_common_options,
    failure,
    py,
    setup,
)
from bench.steps import (
    eval_metrics_path,
    train_ours,
    validation_subset,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser, steps=17, eval_rows=32)
    parser.add_argument("--only", nargs="+", metavar="RECIPE", help="these recipes only")
    parser.add_argument("--eval-rows", type=int, help="test rows to generate (32; 0: all)")
    parser.add_argument("--validation-rows", type=int, help=VALIDATION_ROWS_HELP)
    parser.add_argument(
        "--drop-models",
        action="store_true",
        help="delete each random-init build after its recipe (disk)",
    )


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "recipes")
    recipes = args.only or ([args.recipe] if args.smoke else gpu_recipes())
    ensure_processed(args.data, args.processed)
    env = environment()
    failures, summary = 0, []
    for recipe in recipes:
        first = len(run.commands)
        entry: dict[str, Any] = {"benchmark": "recipe", "recipe": recipe, "smoke": args.smoke}
        entry.update(env)
        model = None
        try:
            _, config = read_recipe(recipe)
            model = ensure_model(run, config, args.processed, args.random_init)
            entry["model"] = model_info(model)
            extra = validation_subset(config, args.processed, args.validation_rows)
            entry["validation_rows"] = args.validation_rows
            ours = train_ours(run, args, recipe, config, model, extra_overrides=extra)
            entry["train"] = ours
            eval_cmd = py("eval", "generate", "--run", ours["run_dir"])
            if args.eval_rows:
                eval_cmd += ["--limit", str(args.eval_rows)]
            run(eval_cmd)
            metrics_path = eval_metrics_path(REPO / ours["run_dir"], args.eval_rows)
            metrics = json.loads(metrics_path.read_text("utf-8"))
            keys = ("backend", "rows_evaluated", "max_new_tokens", "hit_max_new_tokens", "timing")
            entry["eval"] = {k: metrics.get(k) for k in keys}
            entry["success"] = True
        except Exception as err:  # one recipe failing must not hide the others' results
            failures += 1
            entry["success"] = False
            entry.update(failure(run, recipe, err))
        entry["commands"] = run.commands[first:]
        timing = entry.get("train", {}).get("timing", {})
        summary.append(
            f"{recipe}: {'ran' if entry['success'] else 'FAILED'}; "
            f"{timing.get('seconds_per_step')} s/step, {timing.get('real_tokens_per_s')} tok/s, "
            f"peak {timing.get('peak_memory_gib')} GiB; eval "
            f"{entry.get('eval', {}).get('timing', {}).get('seconds')} s"
        )
        # Written as each recipe ends: a call stopped at its time limit keeps what finished.
        write_result(f"recipe-{Path(recipe).stem}", entry, results, args.out_dir)
        if args.drop_models and model:
            drop_model(model)
    for line in summary:
        print(line)
    return 1 if failures else 0
