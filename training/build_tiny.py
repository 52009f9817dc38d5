"""Build the tiny Llama + tokenizer of the tiny-cpu recipe (models/built/tiny-llama)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.build_model import TINY_OUT, BuildError, build_tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=TINY_OUT, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")


def run(args: argparse.Namespace) -> int:
    try:
        out = build_tiny(args.out, force=args.force)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"tiny model + tokenizer: {out}")
    return 0
