"""Table + plot over every evaluated run.

`python -m eval compare runs`: one table (compare.md) and plot (compare.png) over every run
that has eval/metrics.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval.report import _pyplot, _table, is_tiny
from preprocessing.task import TASKS

REQUIRED_KEYS = (
    "strict",
    "normalized",
    "format_errors",
    "timing",
    "backend",
    "rows_evaluated",
    "rows_in_split",
)


def _metrics_file(run_dir: Path) -> Path | None:
    """The run's full eval, else its newest partial one (--limit: eval-limit<N>/), else None."""
    full = run_dir / "eval" / "metrics.json"
    if full.is_file():
        return full
    partial = sorted(run_dir.glob("eval-limit*/metrics.json"), key=lambda p: p.stat().st_mtime)
    return partial[-1] if partial else None


def collect_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run's full eval (runs_dir/*/eval/metrics.json), by run name; a run evaluated only
    in part shows with its newest partial eval, marked as partial. A malformed metrics.json is
    an error naming it. A run's official BC5CDR scores (eval/bc5cdr/bc5cdr.json) come along
    where it has them."""
    from training.run_record import read_official

    found = []
    run_dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for path in filter(None, map(_metrics_file, run_dirs)):
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
        missing = [key for key in REQUIRED_KEYS if key not in metrics]
        if missing:
            raise ValueError(f"{path}: not written by `eval generate` (missing {missing})")
        metrics["_name"] = path.parent.parent.name
        metrics["_official"] = read_official(path.parent)
        found.append(metrics)
    return found


def _official_f1s(official: dict[str, Any] | None) -> str:
    if official is None:
        return "—"
    measures = official["predictions"]["measures"]
    return " / ".join(f"{measures[name]['f1']:.3f}" for name in OFFICIAL_COLUMNS)


OFFICIAL_COLUMNS = ("relation CID", "id Chemical", "id Disease")


_COMPARE_HEADER = [
    "run",
    "kind",
    "chemical F1",
    "disease F1",
    "relation F1",
    "micro F1",
    "macro F1",
    "macro F1 strict",
    "rel. format errors",
    "rows",
    "backend",
    "official CID / chem. id / dis. id F1",
]


def _compare_row(m: dict[str, Any]) -> list[Any]:
    norm, strict, timing = m["normalized"], m["strict"], m["timing"]
    evaluated = str(m["rows_evaluated"])
    if m["rows_evaluated"] < m["rows_in_split"]:
        evaluated += f" of {m['rows_in_split']} (partial)"
    return [
        m["_name"] + (" ⚠ tiny" if is_tiny(m) else ""),
        m.get("kind", "?"),
        *(f"{norm['per_task'][task]['f1']:.3f}" for task in TASKS),
        f"{norm['micro']['f1']:.3f}",
        f"**{norm['macro_f1']:.3f}**",
        f"{strict['macro_f1']:.3f}",
        m["format_errors"]["prediction"],
        evaluated,
        f"{m['backend']}, {timing['rows_per_second']} rows/s",
        _official_f1s(m.get("_official")),
    ]


def compare_label(metrics: dict[str, Any]) -> str:
    """A run's name with the notes compare.md gives it: tiny model, partial evaluation."""
    label = metrics["_name"] + (" ⚠ tiny" if is_tiny(metrics) else "")
    if metrics["rows_evaluated"] < metrics["rows_in_split"]:
        label += f" ({metrics['rows_evaluated']} of {metrics['rows_in_split']} rows)"
    return label


COMPARE_NOTES = (
    "⚠ tiny = random tiny CPU model, numbers meaningless. "
    "(N of M rows) = partial evaluation (--limit): not comparable with full ones."
)


def _test_of(m: dict[str, Any]) -> tuple[str, int, str]:
    rows = ", ".join(f"{task} {n}" for task, n in m.get("rows", {}).items())
    return (m.get("split_sha256") or "unknown", m["rows_evaluated"], rows)


def render_compare(runs: list[dict[str, Any]]) -> str:
    """One table per test (file sha256 + rows): only runs within a table are comparable."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for m in runs:
        groups.setdefault(_test_of(m), []).append(m)
    parts = [
        "# Evaluated runs",
        "",
        "F1 normalized unless marked strict; scoring rules in the README. Runs are grouped by "
        "the test they were scored on (sha256 of the test file and the rows): compare within a "
        "table only. " + COMPARE_NOTES,
    ]
    for (sha, evaluated, rows), members in groups.items():
        parts += [
            "",
            f"## Test file `{sha[:16]}`, {evaluated} rows ({rows})",
            "",
            _table(_COMPARE_HEADER, [_compare_row(m) for m in members]),
        ]
    return "\n".join(parts) + "\n"


def write_compare(runs_dir: Path) -> tuple[Path, Path]:
    runs = collect_runs(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no {runs_dir}/*/eval/metrics.json: evaluate a run first")
    table_path = runs_dir / "compare.md"
    table_path.write_text(render_compare(runs), encoding="utf-8")

    plt = _pyplot()
    groups = [*TASKS, "macro"]
    width = 0.8 / len(runs)
    figure, axis = plt.subplots(figsize=(max(8, 1.5 * len(groups) * len(runs) ** 0.5), 4.5))
    for k, m in enumerate(runs):
        values = [
            m["normalized"]["macro_f1"] if g == "macro" else m["normalized"]["per_task"][g]["f1"]
            for g in groups
        ]
        positions = [i + (k - (len(runs) - 1) / 2) * width for i in range(len(groups))]
        bars = axis.bar(positions, values, width, label=compare_label(m))
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("F1 (normalized)")
    axis.set_title("F1 per task, every evaluated run")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    if any(is_tiny(m) or m["rows_evaluated"] < m["rows_in_split"] for m in runs):
        figure.text(0.01, 0.01, COMPARE_NOTES, fontsize=7, ha="left", va="bottom")
        figure.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        figure.tight_layout()
    plot_path = runs_dir / "compare.png"
    figure.savefig(plot_path, dpi=110)
    plt.close(figure)
    return table_path, plot_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs_dir",
        type=Path,
        nargs="?",
        default=Path("runs"),
        help="directory holding the runs (default runs)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        table, plot = write_compare(args.runs_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table.read_text(encoding="utf-8"))
    print(f"wrote {table} and {plot}")
    return 0
