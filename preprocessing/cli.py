"""The one pattern behind every `python -m <package> COMMAND ...` entry point.

A package's `__main__.py` names its commands and the modules that implement them:

    COMMANDS = {"score": "eval.score", "generate": "eval.generate"}
    sys.exit(run_commands("python -m eval", __doc__, COMMANDS))

and each command module defines

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # its options
    def run(args: argparse.Namespace) -> int: ...                     # its work; the exit status

with the first line of its docstring as the command's one-line help. Heavy imports (torch,
transformers, matplotlib) stay inside `run` so that `--help` and light commands start instantly.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from types import ModuleType


def _help_line(module: ModuleType) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def build_parser(prog: str, description: str | None, commands: Mapping[str, str]):
    """An argparse parser with one subcommand per entry of `commands` (name -> module path)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(description or "").strip().splitlines()[0] if description else None,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_path in commands.items():
        module = importlib.import_module(module_path)
        help_line = _help_line(module)
        sub = subparsers.add_parser(
            name,
            help=help_line,
            description=(module.__doc__ or "").strip() or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def run_commands(
    prog: str, description: str | None, commands: Mapping[str, str], argv: list[str] | None = None
) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command; its exit status."""
    args = build_parser(prog, description, commands).parse_args(argv)
    return args._run(args)
