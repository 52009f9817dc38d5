"""`python -m eval SUBCOMMAND ...`: each subcommand lives in its own module eval/<name>.py.

A module joins the CLI by defining `register(subparsers)`, which adds its parser and sets
`func` (called with the parsed arguments, returning an exit status), or preprocessing.cli's
`add_arguments(parser)` and `run(args)`. Heavy imports (torch,
transformers, matplotlib) stay inside the functions so that `score` starts instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# In help order. A module that does not exist yet is left out of the CLI.
SUBCOMMANDS = ("score", "generate", "compare", "bc5cdr", "ground")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"eval.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"eval.{name}":
                raise
            continue
        if hasattr(module, "register"):
            module.register(subparsers)
        else:  # preprocessing.cli's pattern: add_arguments(parser) and run(args)
            sub = subparsers.add_parser(
                name,
                help=(module.__doc__ or "").strip().splitlines()[0].rstrip("."),
                description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            module.add_arguments(sub)
            sub.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
