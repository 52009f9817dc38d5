"""Build the tiny Llama + tokenizer of the tiny-cpu recipe (models/built/tiny-llama)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.build_model import TINY_OUT, build_tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=TINY_OUT, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")


def run(args: argparse.Namespace) -> int:
    out = build_tiny(args.out, force=args.force)
    print(f"tiny model + tokenizer: {out}")
    return 0
