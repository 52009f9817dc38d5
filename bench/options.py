"""What every `python -m bench` command shares: the common options, --smoke's small values, the
project's targets, and opening a command's log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, WORK, Runner
from training.recipes import TINY_RECIPE

PY = sys.executable
# --smoke: the CPU recipe on the repo's sample data, a few steps and rows (tests use it).
SMOKE = {
    "recipe": TINY_RECIPE,
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
TARGETS = {
    "train_speedup": 7.0,
    "train_3_epochs_s": 240.0,
    "eval_300_rows_s": 60.0,  # the earlier, looser target, still shown beside the split time
    "eval_command_s": 20.0,  # `make eval` on the 300-row split, typing to exit (one H200)
    "eval_decode_tokens_per_s": 5000.0,  # generated tokens per second of decoding
    "eval_speedup": 10.0,
    "scaling_2_gpus": 1.7,
}
VALIDATION_ROWS_HELP = "evaluate training on the first N validation rows (default: all)"


def py(*args: Any) -> list[str]:
    """`python -m ...` with this interpreter, every argument as a string."""
    return [PY, "-m", *map(str, args)]


def read_text(path: Path) -> str:
    """The file's text, or "" when it does not exist."""
    return path.read_text("utf-8") if path.is_file() else ""


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """a / b rounded, or None when either is missing or zero."""
    return round(a / b, digits) if a and b else None


def failure(run: Runner, what: str, err: Exception) -> dict[str, Any]:
    """What a failed step leaves in the results: the error and the log's tail; said on stderr."""
    error = f"{type(err).__name__}: {err}"
    print(f"FAILED {what}: {error}", file=sys.stderr, flush=True)
    return {"error": error, "log_tail": read_text(run.log).splitlines()[-60:]}


def setup(args: argparse.Namespace, name: str) -> tuple[Runner, Path]:
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


def add_common_options(parser: argparse.ArgumentParser, **normal: Any) -> None:
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
