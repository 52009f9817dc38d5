"""Evaluate runs on the test split: generate, score, compare, official BC5CDR, grounding, demo.

Each command is a module with `add_arguments(parser)` and `run(args)` (preprocessing/cli.py).
"""

from __future__ import annotations

from preprocessing.cli import run_commands

COMMANDS = {
    "generate": "eval.generate",
    "score": "eval.score",
    "compare": "eval.compare",
    "bc5cdr": "eval.bc5cdr",
    "ground": "eval.ground",
    "demo": "eval.demo",
}


def main(argv: list[str] | None = None) -> int:
    return run_commands("python -m eval", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    from inference.startup import own_process
    from preprocessing.process_exit import exit_without_teardown

    own_process()  # a process of its own: start-up timed, unused packages kept out
    exit_without_teardown(main())
