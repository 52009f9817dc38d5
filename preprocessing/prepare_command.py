"""Validate INPUT and split it by abstract into train/validation/test chat JSONL.

Bad lines go to DIR/rejects.jsonl with their line number and reason (any reject fails the
command unless --allow-rejects); findings, repairs, the manifest and report.md go beside the
splits. The work is preprocessing/prepare.py's `prepare()`; this is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preprocessing.errors import PrepareError
from preprocessing.prepare import HOW_TO_GET_DATA, prepare
from preprocessing.report import summary
from preprocessing.task import DEFAULT_SYSTEM_PROMPT


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """The options `prepare` and `prepare-bc5cdr` share."""
    parser.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    parser.add_argument(
        "--system-prompt",
        default=DEFAULT_SYSTEM_PROMPT,
        metavar="TEXT",
        help="system turn of every chat row ('' for none); default: the seed's prompt",
    )
    parser.add_argument(
        "--keep-none-relations",
        action="store_true",
        help="keep relation lines with a None argument in the targets (dropped by default)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = f"Where to get INPUT: {HOW_TO_GET_DATA}"
    parser.add_argument("input", type=Path, metavar="INPUT")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--allow-rejects",
        action="store_true",
        help="finish even if lines are rejected (they still go to DIR/rejects.jsonl)",
    )
    add_split_options(parser)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = prepare(
            args.input,
            args.out,
            seed=args.seed,
            allow_rejects=args.allow_rejects,
            system_prompt=args.system_prompt,
            keep_none_relations=args.keep_none_relations,
        )
    except PrepareError as err:  # missing, unusable or bad input: the message says which
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(summary(manifest, args.out))
    if manifest["rows_rejected"]:
        print(
            f"{manifest['rows_rejected']} line(s) rejected (--allow-rejects): "
            f"{Path(args.out) / 'rejects.jsonl'}"
        )
    return 0
