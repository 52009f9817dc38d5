"""A run's loss history (from its TensorBoard events, else its last checkpoint) and loss.png."""

from __future__ import annotations

import json
from pathlib import Path

from training.run_record import last_checkpoint

# F1 scalars an evaluation may log (eval.training_f1): drawn on loss.png's right axis.
F1_MODES = ("normalized", "strict")
F1_COLORS = ("tab:green", "tab:purple")  # the loss curves take the first colours
TAGS = {"train/loss": "train", "eval/loss": "eval"} | {
    f"eval/{mode}_micro_f1": f"eval_{mode}_micro_f1" for mode in F1_MODES
}


def _from_events(run_dir: Path, history: dict[str, dict[int, float]]) -> None:
    event_files = sorted(run_dir.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not event_files:
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for events in event_files:
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag, name in TAGS.items():
            if tag in accumulator.Tags().get("scalars", []):
                for event in accumulator.Scalars(tag):
                    history.setdefault(name, {})[event.step] = event.value


def _from_checkpoint(run_dir: Path, history: dict[str, dict[int, float]]) -> None:
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        return
    state = json.loads((checkpoint / "trainer_state.json").read_text("utf-8"))
    for entry in state.get("log_history", []):
        if "loss" in entry:
            history["train"][entry["step"]] = entry["loss"]
        if "eval_loss" in entry:
            history["eval"][entry["step"]] = entry["eval_loss"]
        for name in set(TAGS.values()) & set(entry):
            history.setdefault(name, {})[entry["step"]] = entry[name]


def loss_history(run_dir: Path) -> dict[str, dict[int, float]]:
    """{'train': {step: loss}, 'eval': {step: loss}} from the TensorBoard events (all of them,
    so a resumed run plots as one curve), else from the last checkpoint's trainer_state.json;
    plus {'eval_<mode>_micro_f1': {step: F1}} for the F1 scalars an evaluation logged, if any."""
    history: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
    _from_events(run_dir, history)
    if not history["train"]:
        _from_checkpoint(run_dir, history)
    return history


def plot_loss(run_dir: Path) -> Path | None:
    """RUNDIR/loss.png (train and eval loss by optimizer step); None when nothing was logged."""
    history = loss_history(run_dir)
    if not history["train"] and not history["eval"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("train", "-"), ("eval", "o-")):
        points = sorted(history[name].items())
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"{name} loss", markersize=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (cross-entropy on assistant tokens)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend(*_with_f1_axis(ax, history))
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _with_f1_axis(ax, history: dict[str, dict[int, float]]) -> tuple[list, list]:
    """F1 during training, if logged, on its own axis (0..1, on the right); the legend's
    handles and labels of both axes."""
    handles, labels = ax.get_legend_handles_labels()
    f1_curves = {name: points for name, points in history.items() if name.endswith("_f1")}
    if not any(f1_curves.values()):
        return handles, labels
    f1_ax = ax.twinx()
    for (name, points), color in zip(sorted(f1_curves.items()), F1_COLORS, strict=False):
        if not points:
            continue
        steps, values = zip(*sorted(points.items()), strict=True)
        label = name.removeprefix("eval_").replace("_", " ").replace("f1", "F1")
        f1_ax.plot(steps, values, "s--", color=color, label=label, markersize=4)
    f1_ax.set_ylim(0, 1)
    f1_ax.set_ylabel("F1 on validation rows")
    more_handles, more_labels = f1_ax.get_legend_handles_labels()
    return handles + more_handles, labels + more_labels
