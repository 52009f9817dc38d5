"""The run directory's record: the one module that reads and updates `runs/<dir>/run.json`, and
the one place that says where a run directory keeps what.

A run directory (runs/<recipe>-<YYYYMMDD_HHMMSS>/) holds:

    run.json            this module (the launcher's record; later stages add their keys here)
    config.yml          training/config.py: the resolved Axolotl config actually trained
    train.log           training/launch.py: all of Axolotl's output, tokens scrubbed
    adapter + tokenizer, checkpoint-*/, TensorBoard events: Axolotl itself
    loss.png            training/run_plots.py
    README.md           training/model_card.py: the model card
    eval/               eval: metrics.json, predictions.jsonl, report.md, f1.png, bc5cdr/
    _eval_f1/           eval/training_f1.py: each in-training evaluation's answers
    merged/             training/merge.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, FileFormatError, atomic_write_json, load_yaml, read_json

RECORD_FILE = "run.json"
CONFIG_FILE = "config.yml"
EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
OFFICIAL_SUBDIR = "bc5cdr"  # eval/bc5cdr/bc5cdr.json: the official BC5CDR evaluation
# Two evals are comparable only when scored on the same test file (sha256) and the same rows.
SAME_TEST_KEYS = ("split_sha256", "rows_evaluated", "rows")
# A finished training leaves the final weights at the top of the run dir (Axolotl saves there).
FINAL_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors")


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """run.json as a dict; FileNotFoundError (one line) when the directory is no run."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; is {run_dir} a run directory?")
    record = read_json(path)
    if not isinstance(record, dict):
        raise FileFormatError(f"{path}: not a JSON object")
    return record


def update_record(run_dir: str | Path, **values: Any) -> dict[str, Any]:
    """Set `values` in run.json (created when missing), written atomically; the whole record."""
    path = Path(run_dir) / RECORD_FILE
    record = read_record(run_dir) if path.is_file() else {}
    record.update(values)
    atomic_write_json(path, record)
    return record


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config.yml, or {} when the run has none."""
    path = Path(run_dir) / CONFIG_FILE
    return load_yaml(path, "a mapping of Axolotl config keys") if path.is_file() else {}


def recipe_of(record: dict[str, Any], run_dir: Path) -> str:
    """The run's recipe: run.json says it; else the dir name <recipe>-<YYYYMMDD_HHMMSS> does."""
    return record.get("recipe") or re.sub(r"-\d{8}_\d{6}$", "", Path(run_dir).name)


def local_path(name: str) -> Path:
    """run.json's paths are repo-relative; absolute (or cwd-relative existing) ones stay."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else REPO / path


def eval_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's eval/metrics.json, or None before it was evaluated."""
    return json_or_none(Path(run_dir) / EVAL_DIR / METRICS_FILE)


def base_eval_metrics(run_dir: str | Path, recipe: str) -> dict[str, Any] | None:
    """runs/<recipe>-base/eval/metrics.json beside the run, or None."""
    return json_or_none(Path(run_dir).parent / f"{recipe}-base" / EVAL_DIR / METRICS_FILE)


def read_official(eval_dir: str | Path) -> dict[str, Any] | None:
    """<run>/eval/bc5cdr/bc5cdr.json, or None when the run has no official evaluation."""
    return json_or_none(Path(eval_dir) / OFFICIAL_SUBDIR / "bc5cdr.json")


def same_test(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when both were scored on the same test file (sha256) and the same rows."""
    return all(a.get(key) is not None and a.get(key) == b.get(key) for key in SAME_TEST_KEYS)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The highest checkpoint-N/ with a trainer_state.json, or None."""
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    checkpoints = [p for p in checkpoints if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def evaluation_record(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """run.json's "evaluations" (step, epoch and every eval_* number the Trainer logged, per
    in-training evaluation) and "kept_checkpoint" (which checkpoint the final adapter is, by
    which metric; None when the last step is kept), from the last checkpoint's trainer_state."""
    checkpoint = last_checkpoint(run_dir)
    state = json_or_none(checkpoint / "trainer_state.json") if checkpoint else None
    if not state:
        return {}
    evaluations = [
        {"step": entry["step"], "epoch": entry.get("epoch")}
        | {k: v for k, v in entry.items() if k.startswith("eval_") and isinstance(v, int | float)}
        for entry in state.get("log_history", [])
        if "eval_loss" in entry
    ]
    kept = None
    if config.get("load_best_model_at_end") and state.get("best_model_checkpoint"):
        metric = config.get("metric_for_best_model") or "eval_loss"
        kept = {
            "checkpoint": Path(state["best_model_checkpoint"]).name,
            "step": state.get("best_global_step")
            or int(state["best_model_checkpoint"].rsplit("-", 1)[-1]),
            "metric": metric if metric.startswith("eval_") else f"eval_{metric}",
            "value": state.get("best_metric"),
            "greater_is_better": bool(config.get("greater_is_better", not metric.endswith("loss"))),
            "evaluations": len(evaluations),
        }
    return {"evaluations": evaluations, "kept_checkpoint": kept}


def final_weights_saved(run_dir: Path, since: float) -> bool:
    """True when the final adapter (or model) was written into the run dir at or after `since`
    (epoch seconds): training finished, whatever happened after (a failed hub push)."""
    return any(
        (run_dir / name).is_file() and (run_dir / name).stat().st_mtime >= since
        for name in FINAL_WEIGHTS
    )


def json_or_none(path: Path) -> dict[str, Any] | None:
    """A JSON file's value, None when missing; FileFormatError when it is not valid JSON."""
    if not path.is_file():
        return None
    value = read_json(path)
    if value is None:
        raise FileFormatError(f"{path}: not valid JSON")
    return value
