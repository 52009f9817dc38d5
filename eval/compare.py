"""`python -m eval compare runs`: one table (compare.md) and plot (compare.png) over every run
that has eval/metrics.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="table + plot over every evaluated run", description=__doc__
    )
    parser.add_argument(
        "runs_dir",
        type=Path,
        nargs="?",
        default=Path("runs"),
        help="directory holding the runs (default runs)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from eval.report import write_compare

    try:
        table, plot = write_compare(args.runs_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table.read_text(encoding="utf-8"))
    print(f"wrote {table} and {plot}")
    return 0
