"""An evaluation's files (metrics.json, report.md, f1.png) and what shows them again: a run's
report and plot rewritten from its saved eval, its model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.generate_timing import PhaseClock
from eval.score import read_jsonl
from preprocessing.files import atomic_write_json


def write_outputs(
    out_dir: Path,
    metrics: dict[str, Any],
    predictions: list[dict],
    clock: PhaseClock,
    full_eval_dir: Path,
) -> None:
    """metrics.json, report.md, f1.png in out_dir; then the model card (a full eval of a run)
    or the recipe's runs' reports (a new base eval); then metrics.json again, with the clock's
    phases up to now, finishing included (the card has read the first one)."""
    from eval.report import write_plot, write_report

    metrics["timing"]["phases"] = clock.phases()  # so far
    atomic_write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir, metrics, predictions)
    write_plot(out_dir, metrics)
    if out_dir != full_eval_dir:
        pass  # a partial eval: the full one, the card and the base comparisons stay as they are
    elif metrics.get("run"):
        refresh_model_card(Path(metrics["run"]))
    else:  # a new base eval: the recipe's evaluated runs can now show base vs fine-tuned
        for run_dir in runs_of_recipe(out_dir.parent.parent, metrics.get("recipe")):
            refresh_outputs(run_dir)
    clock.end("finish")
    metrics["timing"]["phases"] = clock.phases()
    atomic_write_json(out_dir / "metrics.json", metrics)


def runs_of_recipe(runs_dir: Path, recipe: str | None) -> list[Path]:
    """Evaluated runs (not base evals) of a recipe under runs_dir."""
    found = []
    for path in sorted(runs_dir.glob("*/eval/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("recipe") == recipe and metrics.get("kind") != "base":
            found.append(path.parent.parent)
    return found


def refresh_outputs(run_dir: Path) -> None:
    """Rewrite a run's report.md and f1.png from its saved eval, then its model card."""
    from eval.report import write_plot, write_report

    out = run_dir / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [row for _, row in read_jsonl(out / "predictions.jsonl")]
    write_report(out, metrics, predictions)
    write_plot(out, metrics)
    refresh_model_card(run_dir)


def refresh_model_card(run_dir: Path) -> None:
    """The run's README.md carries the eval results; pushed when hub pushes are on.

    The eval itself is already on disk, so a failing card only warns (training/model_card.py).
    """
    from training.model_card import refresh_model_card as rewrite_and_push_card

    rewrite_and_push_card(run_dir)
