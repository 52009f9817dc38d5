"""GPU benchmarks of the project's training and eval, rerunnable by anyone.

`--random-init` trains a model built from the recipe's published architecture
(models/architectures/) with random weights instead of downloading it; `--smoke` runs a tiny
version on CPU (tiny-cpu recipe, sample data, 2-3 steps) and writes to bench/work/smoke-results.
`--out-dir DIR` also copies each result JSON and its log there. Results: bench/results/*.json,
rendered into docs/benchmarks.md by `python -m bench table`.
"""

from __future__ import annotations

import sys

from bench.common import BenchError
from preprocessing.cli import run_commands

COMMANDS = {
    "run": "bench.run",
    "train": "bench.train_vs_seed",
    "eval": "bench.eval_vs_seed",
    "recipes": "bench.recipes",
    "scaling": "bench.scaling",
    "profile": "bench.profile_train",
    "profile-generate": "bench.profile_generate_command",
    "decoding": "bench.decoding_command",
    "serve": "bench.serve",
    "levers": "bench.levers",
    "data-phase": "bench.data_phase",
    "table": "bench.table",
}


def main(argv: list[str] | None = None) -> int:
    try:
        return run_commands("python -m bench", __doc__, COMMANDS, argv)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
