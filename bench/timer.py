"""`StepTimer`: a transformers callback timing a window of optimizer steps after warm-up.

The window opens and closes on a device synchronize; the timer adds none inside it (token counts
stay on the device until it has closed), so timing does not slow what it measures.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from bench.metrics import count_batch


def cuda_sync() -> None:
    """Wait for the GPU to finish queued work (no-op without CUDA): the edge of a timed window."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _gib(value: int) -> float:
    return round(value / 2**30, 3)


class StepTimer(TrainerCallback):
    """Times optimizer steps warmup+1 .. warmup+steps and counts the tokens fed in between.

    Call `count(inputs)` from the trainer's `training_step` for every micro-batch.
    """

    def __init__(self, warmup: int, steps: int, pad_token_id: int | None) -> None:
        if warmup < 1 or steps < 1:
            raise ValueError(f"need at least 1 warm-up and 1 timed step ({warmup=}, {steps=})")
        self.warmup, self.steps, self.pad_token_id = warmup, steps, pad_token_id
        self.counting = False
        self.totals: list[Any] | None = None
        self.started = self.seconds = None
        self.losses: list[dict[str, float]] = []
        self.interruptions: list[str] = []
        self.peak_memory_gib: float | None = None
        self.peak_reserved_gib: float | None = None
        self.batch_keys: list[str] = []

    def count(self, inputs: dict[str, Any]) -> None:
        if not self.counting:
            return
        # What the model is fed tells the attention path: no attention_mask but position_ids
        # means packed rows go through varlen attention.
        self.batch_keys = self.batch_keys or sorted(inputs)
        batch = count_batch(inputs, self.pad_token_id)
        if self.totals is None:
            self.totals = list(batch)
        else:
            self.totals = [a + b for a, b in zip(self.totals, batch, strict=True)]

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            cuda_sync()
            self.started, self.counting = time.perf_counter(), True
        elif state.global_step == self.warmup + self.steps and self.counting:
            cuda_sync()
            self.seconds = time.perf_counter() - self.started
            self.counting = False
            import torch

            if torch.cuda.is_available():
                self.peak_memory_gib = _gib(torch.cuda.max_memory_allocated())
                self.peak_reserved_gib = _gib(torch.cuda.max_memory_reserved())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append({"step": state.global_step, "loss": float(logs["loss"])})

    # Evaluation or checkpointing inside the window would inflate it: say so in the results.
    def on_evaluate(self, args, state, control, **kwargs):
        if self.counting:
            self.interruptions.append(f"evaluation at step {state.global_step}")

    def on_save(self, args, state, control, **kwargs):
        if self.counting:
            self.interruptions.append(f"checkpoint at step {state.global_step}")

    @property
    def done(self) -> bool:
        return self.seconds is not None

    def record(self, epoch_real_tokens: int | None = None) -> dict[str, Any]:
        """This process's raw counters plus memory; `merge_ranks` turns records into results."""
        if not self.done or self.totals is None:
            raise RuntimeError(
                f"timing window not completed: training stopped before step "
                f"{self.warmup + self.steps} (warm-up {self.warmup} + timed {self.steps})"
            )
        real, slots, examples = (int(t) for t in self.totals)
        return {
            "raw": {
                "real_tokens": real,
                "token_slots": slots,
                "examples": examples,
                "seconds": self.seconds,
                "steps": self.steps,
                "warmup_steps": self.warmup,
            },
            "epoch_real_tokens": epoch_real_tokens,
            "peak_memory_gib": self.peak_memory_gib,
            "peak_reserved_gib": self.peak_reserved_gib,
            "batch_keys": self.batch_keys,
            "losses": self.losses,
            "interruptions": self.interruptions,
        }
