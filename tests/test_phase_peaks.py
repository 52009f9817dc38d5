"""A phase's peak GPU memory survives other code resetting torch's peak counter in between (as
Axolotl does at every log line): the phase record folds the peak in before each reset. The CUDA
counters are simulated, so this runs without a GPU."""

from __future__ import annotations

import pytest

from training.phases import PhaseMarks

torch = pytest.importorskip("torch")


class FakeCounter:
    """torch.cuda's allocated-memory counters."""

    def __init__(self) -> None:
        self.allocated = self.peak = 0

    def allocate(self, amount: int) -> None:
        self.allocated += amount
        self.peak = max(self.peak, self.allocated)

    def reset(self, device=None) -> None:
        self.peak = self.allocated


@pytest.fixture
def counter(monkeypatch):
    fake = FakeCounter()
    for name, value in {
        "is_available": lambda: True,
        "is_initialized": lambda: True,
        "synchronize": lambda device=None: None,
        "max_memory_allocated": lambda device=None: fake.peak,
        "reset_peak_memory_stats": fake.reset,
    }.items():
        monkeypatch.setattr(torch.cuda, name, value)
    return fake


def test_a_reset_by_someone_else_keeps_the_phase_peak(counter) -> None:
    gib = 2**30
    marks = PhaseMarks()
    marks.keep_peaks_across_resets()
    counter.allocate(2 * gib)
    marks.mark("model load")
    counter.allocate(5 * gib)  # a KV cache during an evaluation ...
    counter.allocate(-5 * gib)  # ... freed again
    torch.cuda.reset_peak_memory_stats()  # a log line's memory report, before the phase ends
    marks.mark("evaluation")
    counter.allocate(1 * gib)
    counter.allocate(-1 * gib)
    marks.mark("checkpoint save")
    assert [m["peak_gib"] for m in marks.marks] == [2.0, 7.0, 3.0]


def test_without_folding_the_peak_would_be_lost(counter) -> None:
    marks = PhaseMarks()  # keep_peaks_across_resets() not called: what the record used to say
    counter.allocate(2 * 2**30)
    counter.allocate(5 * 2**30)
    counter.allocate(-5 * 2**30)
    torch.cuda.reset_peak_memory_stats()
    marks.mark("evaluation")
    assert marks.marks[0]["peak_gib"] == 2.0
