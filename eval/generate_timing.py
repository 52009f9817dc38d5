"""Where `python -m eval generate`'s wall time goes: metrics.json's `timing`.

`timing` holds the decoding's own figures (seconds, tokens per second, prefill / decode split,
model loading) and, under "phases", the whole command from its process's start to just before
its exit, in consecutive phases that add up to `command_seconds`:

- startup_seconds: process start to the command (interpreter, `python -m eval`'s imports,
  arguments); None where the process is not the command's own (a test calling it in-process)
- imports_seconds: torch, transformers, peft
- prepare_seconds: run resolution, test rows, tokenizer, prompt encoding, token budget
- load_seconds: the model (and adapter) onto the device, stop tokens
- decode_seconds: greedy decoding of every row
- finish_seconds: scoring, predictions.jsonl, metrics.json, report.md, f1.png, the model card

`kept_out_packages`: what inference.startup kept out of the process.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from inference.startup import process_age

PHASES = ("startup", "imports", "prepare", "load", "decode", "finish")


class PhaseClock:
    """Consecutive phases of one command; with `from_process_start` (a clock started at the
    command's beginning) the process's age then is the start-up phase, where it is known."""

    def __init__(self, from_process_start: bool = False) -> None:
        self.startup = process_age() if from_process_start else None
        self.started = time.perf_counter()
        self.last = self.started
        self.seconds: dict[str, float] = {}

    def end(self, phase: str) -> None:
        """The current phase is `phase` and it ends now (a phase may come back: it adds up)."""
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now

    def move(self, seconds: float, source: str, destination: str) -> None:
        """Count `seconds` measured inside phase `source` as `destination`'s instead."""
        seconds = min(seconds, self.seconds.get(source, 0.0))
        self.seconds[source] = self.seconds.get(source, 0.0) - seconds
        self.seconds[destination] = self.seconds.get(destination, 0.0) + seconds

    def phases(self) -> dict[str, float | None]:
        """{<phase>_seconds: ..., command_seconds: process start (else the command's start) to
        now}."""
        record: dict[str, float | None] = {"startup_seconds": _rounded(self.startup)}
        for phase in PHASES[1:]:
            record[f"{phase}_seconds"] = _rounded(self.seconds.get(phase))
        elapsed = time.perf_counter() - self.started
        record["command_seconds"] = round((self.startup or 0.0) + elapsed, 3)
        return record


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary_line(phases: dict[str, float | None]) -> str:
    """One line for stderr: `command 14.2 s: startup 0.9, imports 7.4, ...`."""
    shown = [
        f"{name} {phases[f'{name}_seconds']:.1f}"
        for name in PHASES
        if phases.get(f"{name}_seconds") is not None
    ]
    return f"command {phases['command_seconds']:.1f} s: " + ", ".join(shown)


def decoding_timing(settings: dict[str, Any], rows: int, started: float) -> dict[str, Any]:
    """metrics.json's timing record of the decoding (and its phases) and the model loading;
    `total_seconds`: from the tokenizer's loading (`started`) to now."""
    seconds = settings["seconds"]
    tokens = settings["generated_tokens"]
    return {
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 3) if seconds else None,
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "prefill_seconds": settings.get("prefill_seconds"),
        "decode_seconds": settings.get("decode_seconds"),
        "decode_steps": settings.get("decode_steps"),
        "load_seconds": round(settings["load_seconds"], 3),
        "total_seconds": round(time.perf_counter() - started, 3),  # loading included
    }


def print_summary(phases: dict[str, float | None]) -> None:
    print(summary_line(phases), file=sys.stderr)
