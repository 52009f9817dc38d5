"""Extraction with a trained run: one abstract, a corpus, or an HTTP service.

python -m inference extract --run runs/<dir> --input FILE|DIR|- [--out OUT.jsonl]
python -m inference serve --run runs/<dir> [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

from preprocessing.cli import run_commands

COMMANDS = {"extract": "inference.corpus", "serve": "inference.serve_command"}

if __name__ == "__main__":
    from inference.startup import own_process
    from preprocessing.process_exit import exit_without_teardown

    own_process()  # a process of its own: unused packages may be kept out (inference/startup.py)
    exit_without_teardown(run_commands("python -m inference", __doc__, COMMANDS))
