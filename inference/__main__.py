"""`python -m inference COMMAND ...`: use a trained run (serve it over HTTP)."""

from __future__ import annotations

import sys

from preprocessing.cli import run_commands

COMMANDS = {"serve": "inference.serve"}

if __name__ == "__main__":
    sys.exit(run_commands("python -m inference", __doc__, COMMANDS))
