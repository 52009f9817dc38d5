"""Where a training run's wall time (and GPU memory) goes, phase by phase.

Two processes record marks: the launcher (`python -m training train`: data preparation, hub
decision, the Axolotl process, work after it) and, inside that Axolotl process, our plugin
(`training.axolotl_plugin.RunPlugin`: start-up, tokenisation, model load, optimizer steps, each
evaluation, each checkpoint save, best-model reload, final save). A mark is a wall-clock time
(epoch seconds, comparable across the two processes) and the peak GPU memory allocated since the
previous mark. `phases()` turns the marks into named, consecutive phases that add up to the
whole command; the launcher stores them in run.json ("phases") and prints a summary.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MARKS_FILE = "phase_marks.json"  # written by the Axolotl process into the run directory


def _gib(value: float) -> float:
    return round(value / 2**30, 3)


class PhaseMarks:
    """An ordered list of (name of the phase that just ended, end time, peak memory in it)."""

    def __init__(self, start: float | None = None) -> None:
        self.marks: list[dict[str, Any]] = []
        self.start = time.time() if start is None else start
        self.meta: dict[str, Any] = {}  # facts the phases are read with (tokens per epoch, ...)
        self.folded = 0  # bytes: the phase's peak before someone else reset the counter
        self._reset: Any = None  # torch's own reset, once keep_peaks_across_resets() ran

    def keep_peaks_across_resets(self) -> None:
        """In a process where other code resets torch's peak-memory counter (Axolotl does at
        every log line, the HF Trainer's memory tracker at each stage), a phase's peak would be
        lost: every reset now first folds the peak so far into this record."""
        import torch

        if self._reset is not None:
            return
        self._reset = reset = torch.cuda.reset_peak_memory_stats

        def reset_keeping_peak(device: Any = None) -> None:
            if torch.cuda.is_initialized():
                self.folded = max(self.folded, torch.cuda.max_memory_allocated(device))
            reset(device)

        torch.cuda.reset_peak_memory_stats = reset_keeping_peak

    def mark(self, ended: str) -> None:
        """The phase ``ended`` ends now. On CUDA the GPU is synchronised first (its queued work
        belongs to that phase) and its peak memory is read and reset."""
        peak = None
        torch = sys.modules.get("torch")  # never imported for this (the launcher stays light)
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
            peak = _gib(max(self.folded, torch.cuda.max_memory_allocated()))
            (self._reset or torch.cuda.reset_peak_memory_stats)()
            self.folded = 0
        self.marks.append({"phase": ended, "end": time.time(), "peak_gib": peak})

    def write(self, path: Path) -> None:
        """Atomically: a reader never sees half a file."""
        data = {"start": self.start, "marks": self.marks, "meta": self.meta}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, path)

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def phases(start: float, marks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive phases from ``start``: [{phase, seconds, peak_gib}], in time order. Marks of
    both processes are merged by time; a phase never starts before the previous one ended."""
    out, previous = [], start
    for mark in sorted(marks, key=lambda m: m["end"]):
        seconds = max(0.0, mark["end"] - previous)
        out.append(
            {"phase": mark["phase"], "seconds": round(seconds, 2), "peak_gib": mark.get("peak_gib")}
        )
        previous = max(previous, mark["end"])
    return out


def summary(phase_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Phases of the same kind added up ("evaluation" x5 -> one row with count and total)."""
    totals: dict[str, dict[str, Any]] = {}
    for item in phase_list:
        kind = item["phase"].split(" @ ")[0]
        row = totals.setdefault(kind, {"count": 0, "seconds": 0.0, "peak_gib": None})
        row["count"] += 1
        row["seconds"] = round(row["seconds"] + item["seconds"], 2)
        if item["peak_gib"] is not None:
            row["peak_gib"] = max(row["peak_gib"] or 0.0, item["peak_gib"])
    return totals


def epoch_tokens(dataset: Any) -> int | None:
    """Tokens of one epoch of a tokenized dataset, every row counted once (None if unknown)."""
    columns = getattr(dataset, "column_names", None) or []  # None for streamed datasets
    if "length" in columns:
        return int(sum(dataset["length"]))
    if "input_ids" in columns:
        return int(sum(len(ids) for ids in dataset["input_ids"]))
    return None
