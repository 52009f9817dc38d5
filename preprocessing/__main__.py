"""Build the instruction JSONL from BC5CDR, or validate and split one into chat JSONL."""

from __future__ import annotations

import sys

from preprocessing.cli import run_commands

COMMANDS = {
    "build-bc5cdr": "preprocessing.bc5cdr",
    "prepare": "preprocessing.prepare_command",
    "prepare-bc5cdr": "preprocessing.comparable",
}

if __name__ == "__main__":
    sys.exit(run_commands("python -m preprocessing", __doc__, COMMANDS))
