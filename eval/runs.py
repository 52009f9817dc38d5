"""Which run? The message for `make eval` / `extract` / `serve` (and their CLIs) without one.

`make eval` without RUN= used to end in argparse's "expected one argument"; this says what to
pass and lists the newest runs, so the fix can be copied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NEWEST_SHOWN = 5


def add_run_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    """--run RUNDIR; a bare --run (make's `--run $(RUN)` with RUN unset) reads as no run."""
    parser.add_argument(
        "--run", type=Path, nargs="?", const=None, help="run directory runs/<recipe>-<stamp>"
    )


def newest_runs(runs_dir: Path, count: int = NEWEST_SHOWN) -> list[Path]:
    """Run directories (they hold run.json), newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [path.parent for path in runs_dir.glob("*/run.json")]
    return sorted(runs, key=lambda path: path.stat().st_mtime, reverse=True)[:count]


def no_run_message(make_target: str, runs_dir: Path = Path("runs")) -> str:
    """The lines to print when no run was given."""
    lines = [
        f"error: which run? pass RUN=runs/<dir> (make {make_target} RUN=runs/<dir>) "
        "or --run runs/<dir>"
    ]
    runs = newest_runs(runs_dir)
    if runs:
        lines.append(f"newest runs in {runs_dir}/:")
        lines += [f"  make {make_target} RUN={run.as_posix()}" for run in runs]
    else:
        lines.append(f"no runs in {runs_dir}/ yet: train one first (make train, or make demo)")
    return "\n".join(lines)
