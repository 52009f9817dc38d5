"""Where a training step's time goes: torch.profiler over a few optimizer steps, summarised.

`python -m bench profile` runs our recipe through the real launcher with the timing plugin and
`BENCH_PROFILE_STEPS=N`: the plugin then attaches `StepProfiler`, which profiles optimizer steps
warmup+1 .. warmup+N (CPU and CUDA activity) and writes `<output_dir>/bench_profile.rank<N>.json`.

The summary answers the question — padding, dequantisation, attention, optimizer, data
loading — with numbers a person can compare to the step time:
- wall time of the window (between device synchronizes) vs the time the GPU was busy running
  kernels (union of kernel intervals): a large gap means the host, not the GPU, sets the pace;
- GPU kernel time by category (matmul, 4-bit dequantisation, attention, Triton/Liger, elementwise
  and the rest) and the 20 costliest kernels;
- host-side work: kernel launches, device synchronizations, the optimizer step, fetching batches,
  and the 20 costliest host operators by self time.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from bench.metrics import write_json
from bench.timer import cuda_sync

# Kernel-name patterns, first match wins. Names are CUDA kernel symbols (cuBLAS/cutlass GEMMs,
# bitsandbytes dequantisation, PyTorch's flash/efficient attention, Triton kernels from Liger and
# Axolotl's LoRA kernels).
KERNEL_CATEGORIES = (
    ("dequantize_4bit", re.compile(r"dequant", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|attn|cudnn.*sdpa", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|sm\d+_|cublas|splitK", re.I)),
    ("optimizer", re.compile(r"adam|optimizer|multi_tensor", re.I)),
    ("triton_fused", re.compile(r"^_|triton|liger|_kernel_?\d*$", re.I)),
    ("copy_and_cast", re.compile(r"copy|cast|memcpy|memset|fill", re.I)),
    ("elementwise_and_reduce", re.compile(r"elementwise|reduce|vectorized|unrolled", re.I)),
)
# Host-side events worth counting, by name: launches cost CPU time; synchronizations stall the
# host until the GPU has caught up, so the GPU then idles while the host queues the next kernels;
# the optimizer step and batch fetching are the trainer's own record_function ranges.
HOST_EVENTS = {
    "kernel_launches": re.compile(r"^cu(da)?LaunchKernel"),
    "synchronizations": re.compile(r"^cuda(Stream|Device|Event)Synchronize"),
    "memcpy_calls": re.compile(r"^cudaMemcpy"),
    "optimizer_step": re.compile(r"^Optimizer\.step"),
    "dataloader_next": re.compile(r"^enumerate\(DataLoader\)"),
}


def kernel_category(name: str) -> str:
    for category, pattern in KERNEL_CATEGORIES:
        if pattern.search(name):
            return category
    return "other"


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (kernels on several streams may overlap)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _top(table: dict[str, list[float]], n: int = 20) -> list[dict[str, Any]]:
    rows = sorted(table.items(), key=lambda kv: -kv[1][1])[:n]
    return [{"name": k[:160], "calls": int(c), "ms": round(t / 1e3, 2)} for k, (c, t) in rows]


def summarize_profile(events: Any, wall_s: float, steps: int) -> dict[str, Any]:
    """Summary of a torch.profiler EventList (`prof.events()`) over `steps` optimizer steps."""
    from torch.autograd import DeviceType

    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    host: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    counted = {name: [0, 0.0] for name in HOST_EVENTS}
    intervals: list[tuple[float, float]] = []
    for event in events:
        name, start = event.name, event.time_range.start
        duration = event.time_range.elapsed_us()
        if event.device_type == DeviceType.CUDA:
            # record_function ranges are mirrored on the GPU timeline ("Optimizer.step#...");
            # they span kernels and idle gaps alike, so they are neither kernels nor busy time.
            if getattr(event, "is_user_annotation", False) or "#" in name:
                continue
            intervals.append((start, start + duration))
            kernels[name][0] += 1
            kernels[name][1] += duration
            continue
        for key, pattern in HOST_EVENTS.items():
            if pattern.match(name):
                counted[key][0] += 1
                counted[key][1] += duration
        if name.startswith(("aten::", "cuda")):
            host[name][0] += 1
            host[name][1] += event.self_cpu_time_total
    categories: dict[str, float] = defaultdict(float)
    for name, (_, total) in kernels.items():  # one regex pass per kernel name, not per launch
        categories[kernel_category(name)] += total
    kernel_total = sum(categories.values())
    busy = busy_us(intervals)
    per_step = 1e3 / steps

    def ms(counter: list[float]) -> dict[str, Any]:
        return {
            "calls_per_step": round(counter[0] / steps, 1),
            "ms_per_step": round(counter[1] / 1e3 / steps, 2),
        }

    ranked = sorted(categories.items(), key=lambda kv: -kv[1])
    return {
        "steps": steps,
        "wall_ms_per_step": round(wall_s * per_step, 2),
        "gpu_busy_ms_per_step": round(busy / steps / 1e3, 2),
        "gpu_busy_share": round(busy / 1e6 / wall_s, 3) if wall_s else None,
        "kernel_ms_per_step_by_category": {k: round(v / steps / 1e3, 2) for k, v in ranked},
        "kernel_share_by_category": {k: round(v / kernel_total, 3) for k, v in ranked}
        if kernel_total
        else {},
        "kernels_per_step": round(sum(c for c, _ in kernels.values()) / steps, 1),
        "host_ops_per_step": round(sum(c for c, _ in host.values()) / steps, 1),
        "host": {key: ms(counter) for key, counter in counted.items()},
        "top_kernels": _top(kernels),
        "top_host_ops_by_self_time": _top(host),
    }


def activities() -> list[Any]:
    """What torch.profiler should record here: the host, and the GPU when there is one."""
    import torch

    kinds = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        kinds.append(torch.profiler.ProfilerActivity.CUDA)
    return kinds


class StepProfiler(TrainerCallback):
    """Profiles optimizer steps warmup+1 .. warmup+steps and writes a summary to `out`."""

    def __init__(self, out: Path, warmup: int, steps: int) -> None:
        self.out, self.warmup, self.steps = out, warmup, steps
        self.profiler: Any = None
        self.started = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        if state.global_step == self.warmup:
            cuda_sync()
            self.profiler = torch.profiler.profile(activities=activities())
            self.profiler.__enter__()
            self.started = time.perf_counter()
        elif state.global_step == self.warmup + self.steps and self.profiler is not None:
            cuda_sync()
            wall = time.perf_counter() - self.started
            self.profiler.__exit__(None, None, None)
            summary = summarize_profile(self.profiler.events(), wall, self.steps)
            cuda = torch.cuda.is_available()
            summary["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
            summary["note"] = (
                "Measured under torch.profiler, which adds host overhead per operator: wall time "
                "here is longer than in the timed benchmark; compare shares, not absolute speed."
            )
            write_json(self.out, summary)
            self.profiler = None
