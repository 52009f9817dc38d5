"""What of Axolotl's output reaches the console during `make train`.

Everything Axolotl and the libraries under it print goes to the run's train.log. The console
gets only what a person watches a run for: progress bars (redrawn in place), the loss and eval
dicts the Trainer logs, errors, and a traceback in full. `--verbose` (`make train VERBOSE=1`)
shows everything, as before.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

PROGRESS = re.compile(r"\d+%\|")  # tqdm: " 42%|████▏     | 131/312 [01:10<01:37, ...]"
METRICS = re.compile(r"^\{'(loss|eval_loss|train_runtime)'")
PROBLEM = re.compile(
    r"\[(ERROR|CRITICAL)\]|^\w*Error\b|^error:|Traceback \(most recent call last\)"
)


class Console:
    """Feed it every line of the child's output; it decides what the terminal shows."""

    def __init__(self, out: TextIO | None = None, verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.in_traceback = False
        self.bar_open = False  # a progress bar is drawn without its newline yet

    def _print(self, text: str) -> None:
        if self.bar_open:
            self.out.write("\n")
            self.bar_open = False
        self.out.write(text if text.endswith("\n") else text + "\n")

    def feed(self, line: str) -> None:
        if self.verbose:
            self.out.write(line)
        elif PROGRESS.search(line) and not self.in_traceback:
            self.out.write("\r" + line.rstrip("\n")[-160:])
            self.bar_open = True
        elif self.in_traceback or METRICS.search(line) or PROBLEM.search(line):
            self.in_traceback = self.in_traceback or "Traceback" in line
            self._print(line)
        else:
            return
        self.out.flush()

    def close(self) -> None:
        if self.bar_open:
            self.out.write("\n")
            self.bar_open = False
        self.out.flush()


def say(message: str) -> None:
    """One of the launcher's own `[train]` lines on the console."""
    print(f"[train] {message}", flush=True)
