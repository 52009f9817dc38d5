"""Throughput arithmetic shared by both sides of the training benchmark.

The seed script and our Axolotl run are measured by the same code: `count_batch` reads each
micro-batch the trainer feeds the model, `bench.timer.StepTimer` times a window of optimizer
steps after warm-up, and `summarize` / `merge_ranks` turn the counters into the reported numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EPOCHS = 3  # the seed plan and our recipes train 3 epochs: projections are for that


def count_batch(inputs: dict[str, Any], pad_token_id: int | None) -> tuple[Any, int, Any]:
    """(real tokens, token slots, examples) of one micro-batch.

    Counts are device tensors or plain ints, never read back here: no host-device round trip
    (not even a scalar copy to the device) while training runs.

    Real tokens are the non-padding positions:
    - with an attention mask (the seed's padded rows; Axolotl's packed rows carry 1, 2, 3, ...
      per packed example and 0 for padding): the non-zero positions; examples are the largest
      id per row (1 for an unpacked row);
    - without one (Axolotl drops it when packed rows go through varlen attention and keeps only
      position_ids): the collator pads on the right with the pad id and label -100, so padding
      is the trailing run of such positions; examples are the position_ids restarts at 0 minus
      the padding tail's own restart.
    """
    import torch

    ids = inputs["input_ids"]
    slots = ids.numel()  # shape metadata: no device work
    mask = inputs.get("attention_mask")
    if mask is not None:
        return (mask != 0).sum(), slots, mask.max(dim=-1).values.clamp(min=0).sum()
    pad = ids == pad_token_id if pad_token_id is not None else torch.zeros_like(ids, dtype=bool)
    labels = inputs.get("labels")
    if labels is not None:
        pad &= labels == -100
    tail = pad.flip(-1).int().cumprod(-1).sum(-1)  # length of the trailing padding run per row
    real = ids.numel() - tail.sum()
    positions = inputs.get("position_ids")
    if positions is None:
        return real, slots, ids.shape[0]
    examples = (positions == 0).sum() - (tail > 0).sum()
    return real, slots, examples


def summarize(
    real_tokens: int,
    slots: int,
    examples: int,
    seconds: float,
    steps: int,
    epoch_real_tokens: int | None,
    epochs: int = EPOCHS,
) -> dict[str, Any]:
    """The reported numbers for one timed window (all ranks' tokens, the slowest rank's time)."""
    if seconds <= 0 or steps <= 0 or slots <= 0:
        raise ValueError(f"empty timing window: {seconds=} {steps=} {slots=}")
    tokens_per_s = real_tokens / seconds
    projected = epochs * epoch_real_tokens / tokens_per_s if epoch_real_tokens else None
    return {
        "timed_steps": steps,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4),
        "real_tokens": int(real_tokens),
        "token_slots": int(slots),
        "padding_fraction": round(1 - real_tokens / slots, 4),
        "examples": int(examples),
        "examples_per_step": round(examples / steps, 2),
        "real_tokens_per_step": round(real_tokens / steps, 1),
        "real_tokens_per_s": round(tokens_per_s, 1),
        "epoch_real_tokens": epoch_real_tokens,
        "epochs": epochs,
        "projected_seconds": round(projected, 1) if projected is not None else None,
    }


def merge_ranks(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One window from per-rank records: tokens add up, time and memory are the worst rank's."""
    if not records:
        raise ValueError("no timing records to merge")
    first = records[0]
    merged = summarize(
        real_tokens=sum(r["raw"]["real_tokens"] for r in records),
        slots=sum(r["raw"]["token_slots"] for r in records),
        examples=sum(r["raw"]["examples"] for r in records),
        seconds=max(r["raw"]["seconds"] for r in records),
        steps=first["raw"]["steps"],
        epoch_real_tokens=first.get("epoch_real_tokens"),
    )
    merged["ranks"] = len(records)
    peaks = [r["peak_memory_gib"] for r in records if r.get("peak_memory_gib") is not None]
    merged["peak_memory_gib"] = max(peaks) if peaks else None
    reserved = [r["peak_reserved_gib"] for r in records if r.get("peak_reserved_gib") is not None]
    merged["peak_reserved_gib"] = max(reserved) if reserved else None
    merged["batch_keys"] = first.get("batch_keys", [])
    merged["losses"] = first.get("losses", [])
    merged["interruptions"] = sorted({i for r in records for i in r.get("interruptions", [])})
    return merged


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    return path
