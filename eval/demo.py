"""No GPU needed: the repo's sample data -> tiny-cpu training -> eval report (`make demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from preprocessing.files import REPO, repo_relative
from preprocessing.process_clock import process_started
from training.build_model import SAMPLE_DATA
from training.console import say
from training.recipes import TINY_RECIPE
from training.train import train

DEMO_PROCESSED = REPO / "data" / "processed-sample"


def demo() -> Path | None:
    """Train tiny-cpu on the sample data, then generate on its test split and score it."""
    run_dir = train(
        TINY_RECIPE, data=SAMPLE_DATA, processed=DEMO_PROCESSED, gpus=1, started=process_started()
    )
    if run_dir is None:
        return None
    from eval.generate import resolve_run, run_eval

    say("eval: generating on the sample's test split and scoring it")
    run_eval(resolve_run(run_dir, None, False))
    rel = repo_relative(run_dir)
    say(f"demo done. report: {rel}/eval/report.md  metrics: {rel}/eval/metrics.json")
    say("a random tiny model's F1 is meaningless: this shows the pipeline, not a result")
    say(f"model card: {rel}/README.md   next: make train RECIPE=llama3b-qlora (GPU)")
    return run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo takes no options."""


def run(args: argparse.Namespace) -> int:
    return 0 if demo() else 1
