"""python -m training build-tiny
python -m training build-model --arch models/architectures/X.json [--out DIR] [--data FILE ...]
python -m training train RECIPE --data DATA --processed DIR [--gpus N] [--resume RUNDIR] ...
python -m training demo
python -m training merge RUN"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# The command's start, as close to the interpreter's as we can take it: phases count from here.
STARTED = time.time()


def _build_tiny(args: argparse.Namespace) -> int:
    from training.build_model import build_tiny

    out = build_tiny(args.out, force=args.force)
    print(f"tiny model + tokenizer: {out}")
    return 0


def _build_model(args: argparse.Namespace) -> int:
    from training.build_model import build

    out = build(
        args.arch, args.out, args.data, args.vocab_size, args.seed, args.device,
        trained_tokenizer=args.trained_tokenizer,
    )  # fmt: skip
    print(f"random-init model + tokenizer: {out} (details: {out / 'build.json'})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    run_dir = train(
        args.recipe,
        data=args.data,
        processed=args.processed,
        gpus=args.gpus,
        resume=args.resume,
        max_steps=args.max_steps,
        base_model=args.base_model,
        overrides=args.override,
        runs_dir=args.runs_dir,
        started=STARTED,
        verbose=args.verbose,
    )
    return 0 if run_dir else 1


def _demo(args: argparse.Namespace) -> int:
    from training.train import demo

    return 0 if demo() else 1


def main(argv: list[str] | None = None) -> int:
    from training.build_model import REPO, SEED, TINY_OUT, BuildError

    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser("build-tiny", help="build the tiny Llama + tokenizer of tiny-cpu")
    tiny.add_argument("--out", type=Path, default=TINY_OUT, metavar="DIR")
    tiny.add_argument("--force", action="store_true", help="rebuild even if up to date")
    tiny.set_defaults(run=_build_tiny)

    model = commands.add_parser(
        "build-model",
        help="random-init model with a published architecture + its real (or a trained) tokenizer",
    )
    model.add_argument("--arch", required=True, metavar="JSON", help="architecture file or name")
    model.add_argument("--out", type=Path, metavar="DIR", help="default models/built/<name>")
    model.add_argument(
        "--data",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="JSONL to train a tokenizer on / measure characters per token on "
        "(default: data/sample/sample_instruct.jsonl)",
    )
    model.add_argument(
        "--vocab-size", type=int, help="train a tokenizer of this vocab (default: from the JSON)"
    )
    model.add_argument(
        "--trained-tokenizer",
        action="store_true",
        help="train a tokenizer even where the family's real one is installed",
    )
    model.add_argument("--seed", type=int, default=SEED)
    model.add_argument("--device", help="where to initialise weights (default: cuda if present)")
    model.set_defaults(run=_build_model)

    train = commands.add_parser("train", help="train RECIPE (recipes/<name>.yml) with axolotl")
    train.add_argument("recipe", metavar="RECIPE", help="recipe name or path")
    train.add_argument("--data", type=Path, default=Path("data/both_rel_instruct_all.jsonl"))
    train.add_argument("--processed", type=Path, default=Path("data/processed"))
    train.add_argument("--gpus", type=int, default=1)
    train.add_argument("--resume", type=Path, metavar="RUNDIR", help="continue runs/<dir>")
    train.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    train.add_argument(
        "--verbose",
        action="store_true",
        help="all of Axolotl's output on the console (it is always in the run's train.log)",
    )
    train.add_argument("--base-model", help="train this model (path or hub id) instead")
    train.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key (YAML value), repeatable",
    )
    train.add_argument(
        "--runs-dir", type=Path, default=REPO / "runs", metavar="DIR", help="default runs/"
    )
    train.set_defaults(run=_train)

    demo = commands.add_parser("demo", help="sample data -> tiny-cpu training, no GPU needed")
    demo.set_defaults(run=_demo)

    from training import merge as merge_stage  # light: its heavy imports are inside functions

    merge = commands.add_parser(
        "merge", help="merge a run's adapter into its base model -> RUN/merged/"
    )
    merge_stage.add_arguments(merge)
    merge.set_defaults(run=merge_stage.run_command)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
