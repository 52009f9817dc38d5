"""Build the local models, train a recipe, write a run's model card, merge its adapter."""

from __future__ import annotations

import sys

from preprocessing.cli import run_commands

COMMANDS = {
    "build-tiny": "training.build_tiny",
    "build-model": "training.build_model",
    "train": "training.train",
    "card": "training.model_card",
    "merge": "training.merge",
}

if __name__ == "__main__":
    sys.exit(run_commands("python -m training", __doc__, COMMANDS))
