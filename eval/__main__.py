"""Evaluate runs on the test split: generate, score, compare, official BC5CDR, extract, serve.

Also `python -m eval demo`: sample data -> tiny training -> this evaluation.

Each command is a module with `add_arguments(parser)` and `run(args)` (preprocessing/cli.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from preprocessing.cli import build_parser

COMMANDS = {
    "score": "eval.score",
    "compare": "eval.compare",
    "bc5cdr": "eval.bc5cdr",
    "ground": "eval.ground",
    "demo": "eval.demo",
}
# Still adding their own subparser through `register(subparsers)`: these modules are being
# rewritten by their owners, who move them into COMMANDS (add_arguments + run) with it.
REGISTERING = ("generate", "extract", "serve")


def parser() -> argparse.ArgumentParser:
    built = build_parser("python -m eval", __doc__, COMMANDS)
    (subparsers,) = [a for a in built._actions if isinstance(a, argparse._SubParsersAction)]
    for name in REGISTERING:
        importlib.import_module(f"eval.{name}").register(subparsers)
    return built


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args._run(args) if hasattr(args, "_run") else args.func(args)


if __name__ == "__main__":
    sys.exit(main())
