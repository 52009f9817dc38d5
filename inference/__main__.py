"""python -m inference COMMAND: extraction with a trained run (one abstract, a corpus, a service).

python -m inference extract --run runs/<dir> --input FILE|DIR|- [--out OUT.jsonl]
python -m inference serve --run runs/<dir> [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import importlib.util
import sys

from preprocessing.cli import run_commands

COMMANDS = {"extract": "inference.corpus", "serve": "inference.serve"}


def available(commands: dict[str, str]) -> dict[str, str]:
    """The commands whose module exists in this checkout (a command still being written is
    left out of the CLI rather than breaking every other command)."""
    return {name: module for name, module in commands.items() if importlib.util.find_spec(module)}


if __name__ == "__main__":
    sys.exit(run_commands("python -m inference", __doc__, available(COMMANDS)))
