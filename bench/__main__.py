"""python -m bench run|train|eval|recipes|scaling|table — GPU benchmarks, rerunnable by anyone.

  run      the whole `make train RECIPE=...` from the command to its exit, phase by phase
           (start-up, data, model load, steps, each eval and save, reload, card)
           -> results/run-<recipe>.json
  train    the seed's train.py (bench/seed_baseline.py) vs our recipe through `python -m training
           train`, same GPU, data, model shape and tokenizer, in one call -> results/train.json
  eval     the seed's one-prompt-at-a-time sampling loop (bench/seed_eval.py) vs our batched
           greedy `python -m eval generate` on the test split, same model -> results/eval.json
  recipes  every GPU recipe for >= 20 steps, then `eval generate` on the result
           -> results/recipe-<name>.json each
  scaling  our recipe on 1 GPU and on N GPUs -> results/scaling.json
  profile  torch.profiler over a few of our recipe's steps: where the time goes
           -> results/profile.json
  profile-generate  our eval's decoding steps at batch 1 and 256, timed and profiled
           -> results/profile-generate.json
  decoding our eval's decoding in rounds (dynamic or static KV cache) vs in one round vs
           transformers' continuous batching, same run and split -> results/decoding.json
  table    render docs/benchmarks.md from bench/results/*.json (--check: fail if out of date)

`--random-init` trains a model built from the recipe's published architecture
(models/architectures/) with random weights instead of downloading it; `--smoke` runs a tiny
version on CPU (tiny-cpu recipe, sample data, 2-3 steps) and writes to bench/work/smoke-results.
`--out-dir DIR` also copies each result JSON and its log there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    PLUGIN,
    REPO,
    RESULTS,
    WORK,
    BenchError,
    Runner,
    drop_model,
    ensure_model,
    ensure_processed,
    environment,
    gpu_recipes,
    matmul_tflops,
    model_info,
    new_run_dirs,
    read_recipe,
    runs_of,
    write_result,
)
from bench.decoding import STRATEGIES as DECODING_STRATEGIES
from bench.metrics import merge_ranks
from bench.run import register as register_run

PY = sys.executable
# --smoke: the CPU recipe on the repo's sample data, a few steps and rows (tests use it).
SMOKE = {
    "recipe": "tiny-cpu",
    "data": Path("data/sample/sample_instruct.jsonl"),
    "processed": Path("bench/work/smoke/processed"),
    "warmup": 1,
    "steps": 2,
    "seed_rows": 2,
    "limit": 2,
    "eval_rows": 2,
    "batch_sizes": [1, 2],
    "new_tokens": 4,
    # transformers-cb takes ~1 min on CPU for a handful of rows
    "strategies": ["rounds-static-cache", "rounds-dynamic-cache", "one-round"],
}
# The project's targets, checked against the measurements in the results.
TARGETS = {
    "train_speedup": 7.0,
    "train_3_epochs_s": 240.0,
    "eval_300_rows_s": 60.0,
    "eval_speedup": 10.0,
    "scaling_2_gpus": 1.7,
}


VALIDATION_ROWS_HELP = "evaluate training on the first N validation rows (default: all)"


def py(*args: Any) -> list[str]:
    """`python -m ...` with this interpreter, every argument as a string."""
    return [PY, "-m", *map(str, args)]


def _read(path: Path) -> str:
    return path.read_text("utf-8") if path.is_file() else ""


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _setup(args: argparse.Namespace, name: str) -> tuple[Runner, Path]:
    """Fill unset options (smoke values under --smoke), open the log; returns (runner, results)."""
    for key, normal in args.normal.items():
        if getattr(args, key) is None:
            setattr(args, key, SMOKE.get(key, normal) if args.smoke else normal)
    # Paths as the user meant them, written repo-relative: steps run from the repo root.
    for key in ("data", "processed", "run"):
        if getattr(args, key, None) is not None:
            path = (Path.cwd() / getattr(args, key)).resolve()
            setattr(args, key, path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    logs = [WORK / "logs" / f"{name}{'-smoke' if args.smoke else ''}.log"]
    if args.out_dir:
        args.out_dir = args.out_dir.resolve()
        args.out_dir.mkdir(parents=True, exist_ok=True)
        logs.append(args.out_dir / f"{name}.log")
    return Runner(*logs), WORK / "smoke-results" if args.smoke else RESULTS


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
    created = [d for d in new_run_dirs(recipe, before) if PLUGIN in _read(d / "config.yml")]
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
        "run_dir": _rel(run_dir),
        "gpus": gpus,
        "config": records[0]["config"],
        "kernels": records[0]["kernels"],
        "timing": merge_ranks(records),
        "rank_records": records,
    }


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def _utilisation(parameters: int | None, tokens_per_s: float, ceiling: float | None):
    """Share of the measured bf16 matmul rate, counting 6 x parameters FLOPs per token."""
    if not (parameters and ceiling):
        return None
    return round(6 * parameters * tokens_per_s / (ceiling * 1e12), 4)


def cmd_train(args: argparse.Namespace) -> int:
    run, results = _setup(args, "train")
    ensure_processed(args.data, args.processed)
    _, config = read_recipe(args.recipe)
    model = ensure_model(run, config, args.processed, args.random_init)
    env = environment()
    ceiling = matmul_tflops()
    seed_json = WORK / f"train-seed{'-smoke' if args.smoke else ''}.json"
    run(py("bench.seed_baseline", "--model", model, "--processed", args.processed, "--warmup",
           args.warmup, "--steps", args.steps, "--out", _rel(seed_json)))  # fmt: skip
    seed = json.loads(seed_json.read_text("utf-8"))
    ours = train_ours(run, args, args.recipe, config, model)
    info = model_info(model)
    s, o = seed["timing"], ours["timing"]
    ratios = {
        "real_tokens_per_s": _ratio(o["real_tokens_per_s"], s["real_tokens_per_s"]),
        "examples_per_s": _ratio(
            o["examples_per_step"] / o["seconds_per_step"],
            s["examples_per_step"] / s["seconds_per_step"],
        ),
        "projected_seconds": _ratio(o["projected_seconds"], s["projected_seconds"], 3),
        "peak_memory": _ratio(o["peak_memory_gib"], s["peak_memory_gib"], 3),
    }
    result = {
        "benchmark": "train",
        "smoke": args.smoke,
        **env,
        "matmul_bf16_tflops": ceiling,
        "model": info,
        "data": {
            "processed": _rel(args.processed),
            "train_rows": sum(1 for _ in (REPO / args.processed / "train.jsonl").open()),
        },
        "commands": run.commands,
        "seed": seed,
        "ours": ours,
        "ratios_ours_over_seed": ratios,
        "matmul_utilisation": {
            "convention": "6 x parameters x real tokens/s over the measured bf16 matmul rate",
            "seed": _utilisation(info.get("parameters"), s["real_tokens_per_s"], ceiling),
            "ours": _utilisation(info.get("parameters"), o["real_tokens_per_s"], ceiling),
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


def _latest_run(recipe: str) -> Path:
    done = [p for p in runs_of(recipe) if (p / "adapter_config.json").is_file()]
    if not done:
        raise BenchError(
            f"no finished run of {recipe} under runs/: pass --run, or first run "
            f"`python -m bench recipes --random-init --only {recipe} --eval-rows 0`"
        )
    return max(done, key=lambda p: p.stat().st_mtime)


def _max_new_tokens(run_dir: Path) -> int:
    """Our eval's own default budget over the whole test split: both loops get the same."""
    from eval.generate import default_max_new_tokens, load_test_rows, load_tokenizer, resolve_run

    target = resolve_run(run_dir, None, merged=False)
    rows, _ = load_test_rows(target.test_file, None)
    return default_max_new_tokens(load_tokenizer(target), rows)


def _metrics_path(run_dir: Path, limit: int | None) -> Path:
    """Where `eval generate --run RUN [--limit N]` writes its metrics (eval-limitN/ for part)."""
    from eval.generate import eval_dir, load_test_rows, resolve_run

    full = run_dir / "eval"
    if not limit:
        return full / "metrics.json"
    _, rows_in_split = load_test_rows(resolve_run(run_dir, None, merged=False).test_file, None)
    return eval_dir(full, min(limit, rows_in_split), rows_in_split) / "metrics.json"


def _reusable_eval(
    metrics_path: Path, args: argparse.Namespace, max_new: int, env: dict[str, Any]
) -> dict[str, Any] | None:
    """The run's existing `eval generate` result, when it is exactly the measurement we would
    make (same device, rows and token budget; e.g. `bench recipes --eval-rows 0` just ran it)."""
    if args.fresh or not metrics_path.is_file():
        return None
    previous = json.loads(metrics_path.read_text("utf-8"))
    same = (
        previous.get("device") == (env["device"] if env["gpu_count"] else "cpu")
        and previous.get("max_new_tokens") == max_new
        and previous.get("rows_evaluated") == (args.limit or previous.get("rows_in_split"))
        and "load_seconds" in previous.get("timing", {})
    )
    return previous if same else None


def cmd_eval(args: argparse.Namespace) -> int:
    run, results = _setup(args, "eval")
    if (
        args.run is None
        and args.smoke
        and not any((p / "adapter_config.json").is_file() for p in runs_of(args.recipe))
    ):
        ensure_processed(args.data, args.processed)
        run(py("training", "train", args.recipe, "--data", args.data, "--processed",
               args.processed, "--max-steps", 2))  # fmt: skip
    run_dir = REPO / (args.run or _latest_run(args.recipe))
    max_new = args.max_new_tokens or _max_new_tokens(run_dir)
    env = environment()
    seed_json = WORK / f"eval-seed{'-smoke' if args.smoke else ''}.json"
    run(py("bench.seed_eval", "--run", _rel(run_dir), "--rows", args.seed_rows,
           "--max-new-tokens", max_new, "--out", _rel(seed_json)))  # fmt: skip
    seed = json.loads(seed_json.read_text("utf-8"))
    metrics_path = _metrics_path(run_dir, args.limit)
    ours = _reusable_eval(metrics_path, args, max_new, env)
    reused = ours is not None
    if not reused:
        ours_cmd = py("eval", "generate", "--run", _rel(run_dir), "--max-new-tokens", max_new)
        if args.limit:
            ours_cmd += ["--limit", str(args.limit)]
        run(ours_cmd)
        ours = json.loads(metrics_path.read_text("utf-8"))
    else:
        run.commands.append(f"# reused {_rel(metrics_path)} (created {ours.get('created')})")
    ours_keys = ("backend", "backend_reason", "device", "dtype", "batch_size", "rounds",
                 "rows_evaluated", "rows_in_split", "max_new_tokens", "hit_max_new_tokens",
                 "timing")  # fmt: skip
    ours = {k: ours.get(k) for k in ours_keys}
    # Like for like: each side's model loading (with its adapter) once + its generation over
    # the split (the seed's seconds per row x the rows of the split).
    split_rows = ours["rows_in_split"]
    seed_split_s = round(
        seed["timing"]["load_seconds"] + split_rows * seed["timing"]["seconds_per_row"], 1
    )
    ours_split_s = round(
        ours["timing"]["load_seconds"]
        + ours["timing"]["seconds"] * split_rows / ours["rows_evaluated"],
        1,
    )
    speedup = _ratio(seed_split_s, ours_split_s, 1)
    result = {
        "benchmark": "eval",
        "smoke": args.smoke,
        **env,
        "run": _rel(run_dir),
        "model": model_info(seed["model"]),
        "commands": run.commands,
        "seed": seed,
        "ours": ours,
        "split_rows": split_rows,
        "seed_split_seconds": seed_split_s,
        "seed_split_projected": seed["rows_generated"] < split_rows,
        "ours_split_seconds": ours_split_s,
        "ours_split_projected": ours["rows_evaluated"] < split_rows,
        "ours_reused": reused,
        "speedup": speedup,
        "note": (
            "Split times include loading the model once. Each loop stops a row at its "
            "end-of-turn token or at max_new_tokens (the rows that hit it are in the table), so "
            "the seed loop's few measured rows and our full split need not do the same work per "
            "row. A projected split time is measured seconds per row x the rows of the split "
            "(+ loading, for the seed loop)."
        ),
        "targets": {
            "split_at_most_s": TARGETS["eval_300_rows_s"],
            "split_met": ours_split_s <= TARGETS["eval_300_rows_s"],
            "speedup_at_least": TARGETS["eval_speedup"],
            "speedup_met": (speedup or 0) >= TARGETS["eval_speedup"],
        },
    }
    write_result("eval", result, results, args.out_dir)
    print(
        f"test split ({split_rows} rows): seed loop {seed_split_s} s, ours {ours_split_s} s: "
        f"{speedup}x"
    )
    return 0


def _failure(run: Runner, what: str, err: Exception) -> dict[str, Any]:
    """What a failed step leaves in the results: the error and the log's tail; said on stderr."""
    error = f"{type(err).__name__}: {err}"
    print(f"FAILED {what}: {error}", file=sys.stderr, flush=True)
    return {"error": error, "log_tail": _read(run.log).splitlines()[-60:]}


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
    datasets = [{**d, "path": _rel(subset)} for d in config["test_datasets"]]
    return [f"test_datasets={json.dumps(datasets)}"]


def cmd_recipes(args: argparse.Namespace) -> int:
    run, results = _setup(args, "recipes")
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
            metrics_path = _metrics_path(REPO / ours["run_dir"], args.eval_rows)
            metrics = json.loads(metrics_path.read_text("utf-8"))
            keys = ("backend", "rows_evaluated", "max_new_tokens", "hit_max_new_tokens", "timing")
            entry["eval"] = {k: metrics.get(k) for k in keys}
            entry["success"] = True
        except Exception as err:  # one recipe failing must not hide the others' results
            failures += 1
            entry["success"] = False
            entry.update(_failure(run, recipe, err))
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


def cmd_scaling(args: argparse.Namespace) -> int:
    import torch

    run, results = _setup(args, "scaling")
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
                failed[f"{args.gpus}-{name}"] = _failure(run, name, err)
    one = runs["1"]["timing"]["real_tokens_per_s"]
    speedups = {
        key: _ratio(r["timing"]["real_tokens_per_s"], one, 3)
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


def cmd_profile(args: argparse.Namespace) -> int:
    run, results = _setup(args, "profile")
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


def _measure_on_run(
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
    run_dir = REPO / (args.run or _latest_run(args.recipe))
    env = environment()
    out = WORK / f"{name}{'-smoke' if args.smoke else ''}.json"
    out.unlink(missing_ok=True)  # an earlier call's file must not pass for this one's
    try:
        run(py(module, "--run", _rel(run_dir), *module_args, "--out", _rel(out)))
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
        "run": _rel(run_dir),
        "model": model_info(data["model"]),
        "commands": run.commands,
        **{k: v for k, v in data.items() if k not in ("run", "model", "device")},
    }


def cmd_profile_generate(args: argparse.Namespace) -> int:
    run, results = _setup(args, "profile-generate")
    result = _measure_on_run(
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


def cmd_decoding(args: argparse.Namespace) -> int:
    run, results = _setup(args, "decoding")
    limit = ["--limit", args.limit] if args.limit else []
    result = _measure_on_run(
        args, run, "decoding", "bench.decoding", "--strategies", *args.strategies, *limit,
        keep_partial=True,
    )  # fmt: skip
    first = result["strategies"][result["first_strategy"]]["seconds"]
    for measured in result["strategies"].values():
        measured["seconds_vs_first"] = _ratio(measured["seconds"], first, 2)
    write_result("decoding", result, results, args.out_dir)
    for name, measured in result["strategies"].items():
        print(f"{name}: {measured['seconds']} s, {measured['answers_equal_to_first_strategy']} "
              f"of {result['rows']} answers as {result['first_strategy']}")  # fmt: skip
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from bench.table import render

    text = render(args.results)
    if args.check:
        current = args.doc.read_text("utf-8") if args.doc.is_file() else ""
        if current != text:
            print(f"{args.doc} is out of date: run `python -m bench table`", file=sys.stderr)
            return 1
        print(f"{args.doc} matches {args.results}")
        return 0
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(text, "utf-8")
    print(f"wrote {args.doc}")
    return 0


def _common(parser: argparse.ArgumentParser, **normal: Any) -> None:
    """Options every benchmark takes; unset ones get `normal` (or SMOKE's under --smoke)."""
    normal = {
        "recipe": "llama3b-qlora",
        "data": Path("data/both_rel_instruct_all.jsonl"),
        "processed": Path("data/processed"),
        "warmup": 3,
        "steps": 20,
        **normal,
    }
    parser.add_argument("--recipe", help=f"default {normal['recipe']}")
    parser.add_argument("--data", type=Path, help=f"raw JSONL (default {normal['data']})")
    parser.add_argument("--processed", type=Path, help=f"default {normal['processed']}")
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="train a random-init build of the recipe's architecture",
    )
    parser.add_argument("--warmup", type=int, help=f"untimed optimizer steps ({normal['warmup']})")
    parser.add_argument("--steps", type=int, help=f"timed optimizer steps ({normal['steps']})")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU version (tests)")
    parser.add_argument("--out-dir", type=Path, help="also copy results + log here")
    parser.add_argument(
        "--override",
        action="append",
        metavar="KEY=VALUE",
        help="passed on to `python -m training train` (e.g. deepspeed=null)",
    )
    parser.set_defaults(normal=normal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    register_run(sub)

    train = sub.add_parser("train", help="seed train.py vs our recipe")
    _common(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="seed validate loop vs our eval generate")
    _common(ev, seed_rows=20, limit=None)
    ev.add_argument("--run", type=Path, help="run to evaluate (default: newest of --recipe)")
    ev.add_argument("--seed-rows", type=int, help="rows the seed loop generates (20)")
    ev.add_argument("--limit", type=int, help="rows our eval generates (default: whole split)")
    ev.add_argument("--max-new-tokens", type=int, help="default: our eval's own, whole split")
    ev.add_argument(
        "--fresh",
        action="store_true",
        help="rerun our eval even if the run already has the same measurement",
    )
    ev.set_defaults(func=cmd_eval)

    rec = sub.add_parser("recipes", help="every GPU recipe: train >= 20 steps, then eval")
    _common(rec, steps=17, eval_rows=32)
    rec.add_argument("--only", nargs="+", metavar="RECIPE", help="these recipes only")
    rec.add_argument("--eval-rows", type=int, help="test rows to generate (32; 0: all)")
    rec.add_argument("--validation-rows", type=int, help=VALIDATION_ROWS_HELP)
    rec.add_argument(
        "--drop-models",
        action="store_true",
        help="delete each random-init build after its recipe (disk)",
    )
    rec.set_defaults(func=cmd_recipes)

    sc = sub.add_parser("scaling", help="our recipe on 1 GPU vs --gpus N")
    _common(sc)
    sc.add_argument("--gpus", type=int, default=2)
    sc.add_argument("--validation-rows", type=int, help=VALIDATION_ROWS_HELP)
    sc.add_argument(
        "--strategies",
        nargs="+",
        choices=["zero2", "ddp"],
        default=["zero2"],
        help="multi-GPU runs to make: zero2 (the launcher's DeepSpeed ZeRO-2, default), ddp",
    )
    sc.set_defaults(func=cmd_scaling)

    prof = sub.add_parser("profile", help="torch.profiler over our recipe's steps")
    _common(prof, steps=3)
    prof.add_argument("--validation-rows", type=int, default=16, help=VALIDATION_ROWS_HELP)
    prof.set_defaults(func=cmd_profile)

    pgen = sub.add_parser("profile-generate", help="our eval's decoding steps, timed and profiled")
    _common(pgen, batch_sizes=[1, 256], new_tokens=32, kv_caches=["static", "dynamic"])
    pgen.add_argument("--run", type=Path, help="run to load (default: newest of --recipe)")
    pgen.add_argument("--batch-sizes", type=int, nargs="+", help="rows per batch (1 256)")
    pgen.add_argument("--new-tokens", type=int, help="decoding steps per generate call (32)")
    pgen.add_argument(
        "--kv-caches",
        nargs="+",
        choices=["static", "dynamic"],
        help="KV caches to profile (static dynamic; eval generate uses static)",
    )
    pgen.set_defaults(func=cmd_profile_generate)

    dec = sub.add_parser("decoding", help="our eval's decoding strategies side by side")
    _common(dec, strategies=list(DECODING_STRATEGIES), limit=None)
    dec.add_argument("--run", type=Path, help="run to load (default: newest of --recipe)")
    dec.add_argument("--strategies", nargs="+", choices=DECODING_STRATEGIES)
    dec.add_argument("--limit", type=int, help="first N test rows (default: whole split)")
    dec.set_defaults(func=cmd_decoding)

    table = sub.add_parser("table", help="render docs/benchmarks.md from the results JSON")
    table.add_argument("--results", type=Path, default=RESULTS)
    table.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    table.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    table.set_defaults(func=cmd_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
