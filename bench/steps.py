"""Steps several benchmarks take: our recipe through the real launcher, the newest finished run,
our eval's budget and output paths, a validation subset, a measuring module run on a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    PLUGIN,
    REPO,
    WORK,
    BenchError,
    Runner,
    environment,
    model_info,
    new_run_dirs,
    runs_of,
)
from bench.metrics import merge_ranks
from bench.options import py, read_text
from preprocessing.files import repo_relative


def train_ours(
    run: Runner, args: argparse.Namespace, recipe: str, config: dict[str, Any], model: str,
    gpus: int = 1, extra_overrides: list[str] | None = None, env: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Our recipe through the real launcher. Overridden: the base model, the step count, and
    the recipe's plugins (our timing plugin appended); plus any --override the user passed."""
    before = runs_of(recipe)
    plugins = [*(config.get("plugins") or []), PLUGIN]
    cmd = py("training", "train", recipe, "--data", args.data, "--processed", args.processed,
             "--gpus", gpus, "--max-steps", args.warmup + args.steps, "--base-model", model,
             "--override", f"plugins={json.dumps(plugins)}")  # fmt: skip
    for item in [*(args.override or []), *(extra_overrides or [])]:
        cmd += ["--override", item]
    run(cmd, env={"BENCH_WARMUP_STEPS": str(args.warmup), **(env or {})})
    # Ours is the new run whose resolved config carries the plugin (other runs may start too).
    created = [d for d in new_run_dirs(recipe, before) if PLUGIN in read_text(d / "config.yml")]
    if len(created) != 1:
        raise BenchError(f"expected one new run directory of {recipe}, found {created}")
    run_dir = created[0]
    records = [
        json.loads(p.read_text("utf-8")) for p in sorted(run_dir.glob("bench_timing.rank*.json"))
    ]
    if not records:
        raise BenchError(f"{run_dir}: no bench_timing.rank*.json (did the plugin load?)")
    return {
        "pipeline": "ours",
        "recipe": recipe,
        "run_dir": repo_relative(run_dir),
        "gpus": gpus,
        "config": records[0]["config"],
        "kernels": records[0]["kernels"],
        "timing": merge_ranks(records),
        "rank_records": records,
    }


def utilisation(parameters: int | None, tokens_per_s: float, ceiling: float | None):
    """Share of the measured bf16 matmul rate, counting 6 x parameters FLOPs per token."""
    if not (parameters and ceiling):
        return None
    return round(6 * parameters * tokens_per_s / (ceiling * 1e12), 4)


def latest_run(recipe: str) -> Path:
    done = [p for p in runs_of(recipe) if (p / "adapter_config.json").is_file()]
    if not done:
        raise BenchError(
            f"no finished run of {recipe} under runs/: pass --run, or first run "
            f"`python -m bench recipes --random-init --only {recipe} --eval-rows 0`"
        )
    return max(done, key=lambda p: p.stat().st_mtime)


def eval_max_new_tokens(run_dir: Path) -> int:
    """Our eval's own default budget over the whole test split: both loops get the same."""
    from eval.generate import (
        default_max_new_tokens,
        load_test_rows,
        load_tokenizer,
        resolve_run,
    )

    target = resolve_run(run_dir, None, merged=False)
    rows, _ = load_test_rows(target.test_file, None)
    return default_max_new_tokens(load_tokenizer(target), rows)


def eval_metrics_path(run_dir: Path, limit: int | None) -> Path:
    """Where `eval generate --run RUN [--limit N]` writes its metrics (eval-limitN/ for part)."""
    from eval.generate import eval_dir, load_test_rows, resolve_run

    full = run_dir / "eval"
    if not limit:
        return full / "metrics.json"
    _, rows_in_split = load_test_rows(resolve_run(run_dir, None, merged=False).test_file, None)
    return eval_dir(full, min(limit, rows_in_split), rows_in_split) / "metrics.json"


def validation_subset(config: dict[str, Any], processed: Path, rows: int | None) -> list[str]:
    """Overrides that point the recipe's eval at the first ``rows`` validation rows.

    Axolotl always evaluates at step 0; on a 7B model the full 300-row split alone takes minutes,
    which a 10-minute GPU call cannot spare. Only the file changes, every other eval key stays.
    """
    if not rows or not config.get("test_datasets"):
        return []
    source = Path(processed) / "validation.jsonl"
    subset = WORK / f"validation-{rows}.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    lines = source.read_text("utf-8").splitlines(keepends=True)[:rows]
    subset.write_text("".join(lines), "utf-8")
    datasets = [{**d, "path": repo_relative(subset)} for d in config["test_datasets"]]
    return [f"test_datasets={json.dumps(datasets)}"]


def measure_on_run(
    args: argparse.Namespace,
    run: Runner,
    name: str,
    module: str,
    *module_args: Any,
    keep_partial: bool = False,
) -> dict[str, Any]:
    """`python -m <module> --run RUN ... --out FILE` on --run (default: the newest run of
    --recipe); returns its output wrapped with environment, model and commands.
    keep_partial: a module that failed after writing FILE still counts, marked in the commands."""
    run_dir = REPO / (args.run or latest_run(args.recipe))
    env = environment()
    out = WORK / f"{name}{'-smoke' if args.smoke else ''}.json"
    out.unlink(missing_ok=True)  # an earlier call's file must not pass for this one's
    try:
        run(py(module, "--run", repo_relative(run_dir), *module_args, "--out", repo_relative(out)))
    except BenchError:
        if not (keep_partial and out.is_file()):
            raise
        print(f"{module} stopped early: keeping what it measured", file=sys.stderr)
        run.commands.append("# stopped early (see the log): parts not listed did not finish")
    data = json.loads(out.read_text("utf-8"))
    return {
        "benchmark": name,
        "smoke": args.smoke,
        **env,
        "run": repo_relative(run_dir),
        "model": model_info(data["model"]),
        "commands": run.commands,
        **{k: v for k, v in data.items() if k not in ("run", "model", "device")},
    }
