"""Which validation rows the in-training F1 decodes, and how ranks share them.

- `select_rows`: all rows, or a fixed subset of N: per task (preprocessing.task) a share of N in
  proportion to the task's rows (largest remainders), each task's rows ordered by
  sha256(seed, prompt). The same file, N and seed give the same rows on any machine, whatever the
  file's order or the number of GPUs.
- `shard_indices` / `merge_shards`: rank r of W decodes every W-th row from r (strided, so each
  rank gets long and short rows alike); the shards, gathered, go back into file order, every row
  exactly once.
- `gather_shards` / `broadcast_from_first`: the torch.distributed side (any backend; NCCL and
  gloo both carry Python objects this way). Without a process group they are the identity.
"""

from __future__ import annotations

import hashlib
from typing import Any

from preprocessing.task import TASKS, task_of


def _order_key(seed: int, prompt: str) -> str:
    return hashlib.sha256(f"{seed}\0{prompt}".encode()).hexdigest()


def task_quotas(counts: dict[str, int], wanted: int) -> dict[str, int]:
    """``wanted`` rows split over tasks in proportion to ``counts`` (largest remainders; ties go
    to the task listed first in preprocessing.task.TASKS)."""
    total = sum(counts.values())
    shares = {task: wanted * count / total for task, count in counts.items()}
    quotas = {task: int(share) for task, share in shares.items()}
    rank = {task: i for i, task in enumerate(TASKS)}
    by_remainder = sorted(counts, key=lambda t: (-(shares[t] - quotas[t]), rank.get(t, len(rank))))
    for task in by_remainder[: wanted - sum(quotas.values())]:
        quotas[task] += 1
    return quotas


def select_rows(rows: list[dict], wanted: int | None, seed: int = 0) -> list[int]:
    """Indices (in file order) of the rows to decode: all of them when ``wanted`` is None or at
    least the number of rows, else a task-stratified subset of ``wanted`` rows (see module doc)."""
    if wanted is None or wanted >= len(rows):
        return list(range(len(rows)))
    by_task: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_task.setdefault(task_of(row["prompt"]) or "", []).append(index)
    quotas = task_quotas({task: len(indices) for task, indices in by_task.items()}, wanted)
    chosen: list[int] = []
    for task, indices in by_task.items():
        ordered = sorted(indices, key=lambda i: _order_key(seed, rows[i]["prompt"]))
        chosen += ordered[: quotas[task]]
    return sorted(chosen)


def shard_indices(count: int, rank: int, world_size: int) -> list[int]:
    """Positions 0..count-1 that rank ``rank`` of ``world_size`` decodes."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return list(range(rank, count, world_size))


def merge_shards(shards: list[list[tuple[int, Any]]], count: int) -> list[Any]:
    """The ranks' (position, result) lists back as one list in position order; every position
    0..count-1 must come exactly once."""
    merged: dict[int, Any] = {}
    for shard in shards:
        for position, result in shard:
            if position in merged:
                raise ValueError(f"row {position} came back from two ranks")
            merged[position] = result
    missing = sorted(set(range(count)) - set(merged))
    if missing or len(merged) != count:
        raise ValueError(f"rows {missing[:10]} never came back ({len(merged)} of {count})")
    return [merged[position] for position in range(count)]


def _process_group_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_shards(local: list[tuple[int, Any]], count: int) -> list[Any]:
    """Every rank's (position, result) list, gathered (all_gather_object) and merged in order."""
    world_size = _process_group_size()
    if world_size == 1:
        return merge_shards([local], count)
    import torch.distributed as dist

    shards: list[Any] = [None] * world_size
    dist.all_gather_object(shards, local)
    return merge_shards(shards, count)


def broadcast_from_first(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (what the other ranks pass is ignored)."""
    if _process_group_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
