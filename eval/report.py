"""Human-readable results: report.md and f1.png for one evaluation, compare.md/.png over runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.score import compare_row, prf
from preprocessing.task import TASKS, task_of
from training.recipes import TINY_RECIPE
from training.run_record import same_test

MODES = ("normalized", "strict")
WORST_EXAMPLES = 10
ITEMS_SHOWN = 12  # per list of false positives / negatives in the worst examples
# How each answer ended (Generation.finish_reason), as the worst examples say it.
FINISH_NOTES = {
    "stop": "ended its turn",
    "length": "cut off at max_new_tokens",
}


def is_tiny(metrics: dict[str, Any]) -> bool:
    """The random tiny model the repo builds for CPU demos and tests."""
    return metrics.get("recipe") == TINY_RECIPE or "models/built" in str(metrics.get("model"))


def _base_path(metrics: dict[str, Any]) -> Path | None:
    if metrics.get("kind") == "base" or not metrics.get("run") or not metrics.get("recipe"):
        return None
    return Path(metrics["run"]).parent / f"{metrics['recipe']}-base" / "eval" / "metrics.json"


def base_metrics_for(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """runs/<recipe>-base/eval/metrics.json beside a fine-tuned run, when it has been made on
    the same test file and rows (anything else would compare different questions)."""
    path = _base_path(metrics)
    if path is None or not path.exists():
        return None
    base = json.loads(path.read_text())
    return base if same_test(metrics, base) else None


def unpaired_base_note(metrics: dict[str, Any]) -> str | None:
    """Why an existing base eval is not shown beside this one, or None."""
    path = _base_path(metrics)
    if path is None or not path.exists() or base_metrics_for(metrics) is not None:
        return None
    return (
        f"> The base model's eval (`{path}`) was scored on another test file or other rows "
        "(sha256 / row counts differ): not compared. Rerun `make eval-base` on this split."
    )


def label_of(metrics: dict[str, Any]) -> str:
    name = Path(metrics["run"]).name if metrics.get("run") else f"{metrics.get('recipe')}-base"
    return f"{name} ({metrics.get('kind', '?')})"


# ---- markdown --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(text: str) -> str:
    """Inline code (used in lists, not tables) that survives backticks and newlines."""
    text = text.replace("\n", "⏎")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _scores_table(mode_metrics: dict[str, Any]) -> str:
    rows = []
    for name in (*TASKS, "micro"):
        c = mode_metrics["micro"] if name == "micro" else mode_metrics["per_task"][name]
        rows.append(
            [
                name,
                f"{c['precision']:.3f}",
                f"{c['recall']:.3f}",
                f"**{c['f1']:.3f}**",
                c["tp"],
                c["fp"],
                c["fn"],
            ]
        )
    table = _table(["task", "precision", "recall", "F1", "tp", "fp", "fn"], rows)
    averaged = mode_metrics.get("macro_tasks", TASKS)
    over = "the three tasks" if len(averaged) == len(TASKS) else "the tasks with rows: "
    over += "" if len(averaged) == len(TASKS) else ", ".join(averaged)
    return f"{table}\n\nmacro F1 (mean of {over}): **{mode_metrics['macro_f1']:.3f}**"


def _worst_examples(predictions: list[dict]) -> list[str]:
    """The rows with the most errors (normalized mode), with their false positives/negatives."""
    scored = []
    for number, row in enumerate(predictions, 1):
        task = task_of(row["prompt"])
        result = compare_row(task, row["completion"], row["prediction"], normalized=True)
        if result.fp + result.fn:
            f1 = prf(result.tp, result.fp, result.fn)["f1"]
            scored.append((-(result.fp + result.fn), f1, number, task, row, result))
    scored.sort(key=lambda entry: entry[:3])
    sections = []
    for _, f1, number, task, row, result in scored[:WORST_EXAMPLES]:
        lines = [
            f"### Line {number}: {task}, doc {row.get('doc_id', '?')}: "
            f"tp {result.tp}, fp {result.fp}, fn {result.fn} (F1 {f1:.2f})",
            "",
        ]
        for title, items in (
            ("False positives", result.false_positives),
            ("False negatives", result.false_negatives),
        ):
            shown = ", ".join(_code(item) for item in items[:ITEMS_SHOWN]) or "none"
            more = f" … and {len(items) - ITEMS_SHOWN} more" if len(items) > ITEMS_SHOWN else ""
            lines.append(f"- {title}: {shown}{more}")
        excerpt = row["prediction"][:300] + ("…" if len(row["prediction"]) > 300 else "")
        finish = FINISH_NOTES.get(row.get("finish_reason"), row.get("finish_reason", "?"))
        lines.append(f"- Raw prediction ({finish}): {_code(excerpt)}")
        sections.append("\n".join(lines) + "\n")
    return sections


def _header(metrics: dict[str, Any]) -> list[str]:
    """Title, warnings (tiny model, partial eval) and what was evaluated how."""
    timing = metrics["timing"]
    parts = [f"# Evaluation: {label_of(metrics)}", ""]
    if is_tiny(metrics):
        parts += [
            "> **These numbers are meaningless.** The model is the random-weight tiny model "
            f"of the `{TINY_RECIPE}` recipe, trained for seconds on a CPU to check that the "
            "pipeline works end to end; it has not learned the task.",
            "",
        ]
    if metrics["rows_evaluated"] < metrics["rows_in_split"]:
        parts += [
            f"> Partial evaluation: the first {metrics['rows_evaluated']} of "
            f"{metrics['rows_in_split']} test rows (`--limit`).",
            "",
        ]
    return parts + [
        f"- model: `{metrics['model']}`"
        + (f", adapter `{metrics['adapter']}`" if metrics.get("adapter") else ""),
        f"- test split: `{metrics['split_file']}` (sha256 `{metrics['split_sha256'][:16]}…`), "
        f"{metrics['rows_evaluated']} rows: "
        + ", ".join(f"{n} {task}" for task, n in metrics["rows"].items()),
        f"- backend: {metrics['backend']} ({metrics['backend_reason']}) on {metrics['device']}, "
        f"greedy, max_new_tokens {metrics['max_new_tokens']}",
        f"- generation: {timing['seconds']:.1f} s, {timing['rows_per_second']} rows/s, "
        f"{timing['generated_tokens']} tokens; {metrics['hit_max_new_tokens']} answers hit "
        "max_new_tokens without ending their turn",
        "",
        "Scoring rules: see the README (items are lines minus one bullet; normalized = NFKC, "
        "case-fold, dashes, whitespace, trailing `.,;:`).",
        "",
    ]


def _base_section(metrics: dict[str, Any]) -> list[str]:
    """Base vs fine-tuned F1, when a base eval on the same test exists (or why it is not shown)."""
    parts: list[str] = []
    base = base_metrics_for(metrics)
    note = unpaired_base_note(metrics)
    if note:
        parts += [note, ""]
    if not base:
        return parts
    rows = [
        [task]
        + [f"{m[mode]['per_task'][task]['f1']:.3f}" for mode in MODES for m in (base, metrics)]
        for task in TASKS
    ]
    rows.append(
        ["macro"] + [f"{m[mode]['macro_f1']:.3f}" for mode in MODES for m in (base, metrics)]
    )
    head = [
        "task", "base (normalized)", "fine-tuned (normalized)", "base (strict)",
        "fine-tuned (strict)",
    ]  # fmt: skip
    return parts + ["## Base vs fine-tuned (F1)", "", _table(head, rows), ""]


def _format_errors_section(metrics: dict[str, Any]) -> list[str]:
    errors = metrics["format_errors"]
    return [
        "## Relation format errors",
        "",
        "Relation lines that do not read `Chemical <c> influences disease <d>`; they count as "
        "false positives (predictions) or false negatives (gold) and can never match.",
        "",
        _table(
            ["", "unparseable lines", "all relation lines"],
            [
                ["predictions", errors["prediction"], errors["prediction_lines"]],
                ["gold", errors["gold"], errors["gold_lines"]],
            ],
        ),
        "",
    ]


def render_report(metrics: dict[str, Any], predictions: list[dict]) -> str:
    """report.md: what was evaluated, base vs fine-tuned, scores, format errors, worst examples."""
    parts = _header(metrics) + _base_section(metrics)
    for mode in MODES:
        parts += [f"## Scores ({mode})", "", _scores_table(metrics[mode]), ""]
    parts += _format_errors_section(metrics)
    parts += [
        f"## Worst examples (normalized, top {WORST_EXAMPLES} by fp + fn)",
        "",
        "Each shows the model's raw answer (first 300 characters) and how it ended: it ended its "
        "turn, or was cut off at max_new_tokens (then its last item is likely incomplete).",
        "",
    ]
    parts += _worst_examples(predictions) or ["No errors."]
    return "\n".join(parts).rstrip() + "\n"


def write_report(out_dir: Path, metrics: dict[str, Any], predictions: list[dict]) -> Path:
    from eval.bc5cdr_report import official_section
    from training.run_record import read_official

    path = out_dir / "report.md"
    text = render_report(metrics, predictions)
    official = read_official(out_dir)
    if official is not None:  # `make bc5cdr-eval RUN=...` has run: its numbers go in too
        text += "\n" + "\n".join(official_section(official))
    path.write_text(text, encoding="utf-8")
    return path


# ---- plots -----------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def write_plot(out_dir: Path, metrics: dict[str, Any]) -> Path:
    """Per-task F1 bars, normalized and strict side by side; base vs fine-tuned when both exist."""
    plt = _pyplot()
    series = [(metrics.get("kind", "model"), metrics)]
    base = base_metrics_for(metrics)
    if base:
        series.insert(0, ("base", base))
    groups = [*TASKS, "micro"]
    width = 0.8 / len(series)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, mode in zip(axes, MODES, strict=True):
        for k, (name, m) in enumerate(series):
            values = [
                m[mode]["micro"]["f1"] if g == "micro" else m[mode]["per_task"][g]["f1"]
                for g in groups
            ]
            positions = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
            bars = axis.bar(positions, values, width, label=name)
            axis.bar_label(bars, fmt="%.2f", fontsize=8)
        axis.set_xticks(range(len(groups)), groups)
        axis.set_title(f"{mode} (macro F1 {metrics[mode]['macro_f1']:.3f})")
        axis.set_ylim(0, 1.05)
        axis.legend()  # on each panel: each can be read (and cropped) alone
    axes[0].set_ylabel("F1")
    title = label_of(metrics)
    if is_tiny(metrics):
        title += ": random tiny model, numbers meaningless"
    if metrics["rows_evaluated"] < metrics["rows_in_split"]:
        title += f"\npartial: first {metrics['rows_evaluated']} of {metrics['rows_in_split']} rows"
    figure.suptitle(title)
    figure.tight_layout()
    path = out_dir / "f1.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
