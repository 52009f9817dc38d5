"""The seed's one-prompt-at-a-time sampling loop vs our batched `python -m eval generate`.

Same run, the test split -> bench/results/eval.json (the seed loop: bench/seed_eval.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    WORK,
    Runner,
    ensure_processed,
    environment,
    model_info,
    runs_of,
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
    eval_max_new_tokens,
    eval_metrics_path,
    latest_run,
)
from eval.generate_timing import summary_line
from preprocessing.files import repo_relative


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser, seed_rows=20, limit=None)
    parser.add_argument("--run", type=Path, help="run to evaluate (default: newest of --recipe)")
    parser.add_argument("--seed-rows", type=int, help="rows the seed loop generates (20)")
    parser.add_argument("--limit", type=int, help="rows our eval generates (default: whole split)")
    parser.add_argument("--max-new-tokens", type=int, help="default: our eval's own, whole split")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="rerun our eval even if the run already has the same measurement",
    )


def reusable_eval(
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


OURS_KEYS = ("backend", "backend_reason", "engine", "device", "dtype", "batch_size", "rounds",
             "rows_evaluated", "rows_in_split", "max_new_tokens", "hit_max_new_tokens",
             "timing")  # fmt: skip
NOTE = (
    "Split times include loading the model once. Each loop stops a row at its "
    "end-of-turn token or at max_new_tokens (the rows that hit it are in the table), so "
    "the seed loop's few measured rows and our full split need not do the same work per "
    "row. A projected split time is measured seconds per row x the rows of the split "
    "(+ loading, for the seed loop)."
)


def _run_to_evaluate(run: Runner, args: argparse.Namespace) -> Path:
    """--run, else the newest finished run of --recipe (under --smoke trained first if none)."""
    if (
        args.run is None
        and args.smoke
        and not any((p / "adapter_config.json").is_file() for p in runs_of(args.recipe))
    ):
        ensure_processed(args.data, args.processed)
        run(py("training", "train", args.recipe, "--data", args.data, "--processed",
               args.processed, "--max-steps", 2))  # fmt: skip
    return REPO / (args.run or latest_run(args.recipe))


def command_phases(metrics: dict[str, Any], measured: float | None) -> dict[str, Any] | None:
    """Where our command's time went (metrics.json timing.phases: start-up, imports, prepare,
    load, decode, finish, up to just before exit), plus `after_seconds`: the `measured` wall
    time to the process's exit beyond that (exit and process spawn); None for a record older
    than the phases."""
    phases = (metrics.get("timing") or {}).get("phases")
    if not phases:
        return None
    after = None
    if measured is not None and phases.get("startup_seconds") is not None:
        after = round(max(0.0, measured - phases["command_seconds"]), 3)
    return {**phases, "after_seconds": after}


def _ours(
    run: Runner, args: argparse.Namespace, run_dir: Path, max_new: int, env: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Our eval's measurement (made now, or reused when identical) and whether it was reused."""
    metrics_path = eval_metrics_path(run_dir, args.limit)
    ours = reusable_eval(metrics_path, args, max_new, env)
    if ours is not None:
        created = ours.get("created")
        run.commands.append(f"# reused {repo_relative(metrics_path)} (created {created})")
        kept = {"command_seconds": None, "phases": command_phases(ours, None)}
        return {k: ours.get(k) for k in OURS_KEYS} | kept, True
    command = py("eval", "generate", "--run", repo_relative(run_dir), "--max-new-tokens", max_new)
    if args.limit:
        command += ["--limit", str(args.limit)]
    # What `make eval RUN=...` runs, timed from the interpreter's start to its exit.
    seconds = run(command)
    ours = json.loads(metrics_path.read_text("utf-8"))
    measured = {"command_seconds": round(seconds, 1), "phases": command_phases(ours, seconds)}
    return {k: ours.get(k) for k in OURS_KEYS} | measured, False


def _split_seconds(seed: dict[str, Any], ours: dict[str, Any]) -> tuple[float, float]:
    """Like for like: each side's model loading (with its adapter) once + its generation over
    the split (the seed's seconds per row x the rows of the split)."""
    rows = ours["rows_in_split"]
    seed_s = seed["timing"]["load_seconds"] + rows * seed["timing"]["seconds_per_row"]
    ours_s = (
        ours["timing"]["load_seconds"] + ours["timing"]["seconds"] * rows / ours["rows_evaluated"]
    )
    return round(seed_s, 1), round(ours_s, 1)


def _targets(ours: dict[str, Any], speedup: float | None) -> dict[str, Any]:
    """The whole command to its exit, the decoding rate, and the ratio to the seed loop."""
    command_s = ours.get("command_seconds")
    rate = (ours.get("timing") or {}).get("tokens_per_second")
    return {
        "command_at_most_s": TARGETS["eval_command_s"],
        "command_met": command_s is not None and command_s <= TARGETS["eval_command_s"],
        "decode_tokens_per_s_at_least": TARGETS["eval_decode_tokens_per_s"],
        "decode_met": rate is not None and rate >= TARGETS["eval_decode_tokens_per_s"],
        "speedup_at_least": TARGETS["eval_speedup"],
        "speedup_met": (speedup or 0) >= TARGETS["eval_speedup"],
    }


def run(args: argparse.Namespace) -> int:
    run, results = setup(args, "eval")
    run_dir = _run_to_evaluate(run, args)
    max_new = args.max_new_tokens or eval_max_new_tokens(run_dir)
    env = environment()
    seed_json = WORK / f"eval-seed{'-smoke' if args.smoke else ''}.json"
    run(py("bench.seed_eval", "--run", repo_relative(run_dir), "--rows", args.seed_rows,
           "--max-new-tokens", max_new, "--out", repo_relative(seed_json)))  # fmt: skip
    seed = json.loads(seed_json.read_text("utf-8"))
    ours, reused = _ours(run, args, run_dir, max_new, env)
    split_rows = ours["rows_in_split"]
    seed_split_s, ours_split_s = _split_seconds(seed, ours)
    speedup = ratio(seed_split_s, ours_split_s, 1)
    result = {
        "benchmark": "eval", "smoke": args.smoke, **env, "run": repo_relative(run_dir),
        "model": model_info(seed["model"]), "commands": run.commands, "seed": seed, "ours": ours,
        "split_rows": split_rows, "seed_split_seconds": seed_split_s,
        "seed_split_projected": seed["rows_generated"] < split_rows,
        "ours_split_seconds": ours_split_s,
        "ours_split_projected": ours["rows_evaluated"] < split_rows,
        "ours_reused": reused, "speedup": speedup, "note": NOTE,
        "targets": _targets(ours, speedup),
    }  # fmt: skip
    write_result("eval", result, results, args.out_dir)
    print(
        f"test split ({split_rows} rows): seed loop {seed_split_s} s, ours {ours_split_s} s: "
        f"{speedup}x; our command {ours.get('command_seconds')} s to its exit"
    )
    if ours["phases"]:
        print(f"our {summary_line(ours['phases'])}, after it {ours['phases']['after_seconds']} s")
    return 0
