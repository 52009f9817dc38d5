"""Train a recipe with Axolotl: recipe + data -> runs/<recipe>-<YYYYMMDD_HHMMSS>/.

1. Prepares the data first when the processed dir is missing or was built from other bytes
   (training/data.py).
2. Decides about the Hugging Face Hub once, before training (training/hub.py), then writes the
   resolved Axolotl config (training/config.py) and run.json (training/run_record.py).
3. Runs Axolotl's own CLI in a subprocess (accelerate + DeepSpeed ZeRO-2 for several GPUs), tees
   its output to train.log with any token scrubbed (training/launch.py).
4. Afterwards: loss.png (training/run_plots.py), the run record, the model card
   (training/model_card.py) and where the time went.

`--resume runs/<dir>` continues a killed run from its last checkpoint in the same directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from preprocessing.errors import PrepareError
from preprocessing.files import REPO, now, repo_relative
from preprocessing.process_clock import process_started
from training import preflight
from training.build_model import TINY_OUT, build_tiny
from training.config import apply_overrides, parse_override, resolve_config, set_hub, write_config
from training.console import say
from training.data import ensure_processed, ensure_same_data
from training.errors import TrainError
from training.hardware import hardware
from training.hub import hub_repo, hub_token, hub_url
from training.launch import axolotl_command, run_logged, scrub_run_dir, trainer_runtime
from training.model_card import refresh_model_card
from training.phases import MARKS_FILE, PhaseMarks, phases, summary
from training.recipes import RUNS, load_config, load_recipe
from training.row_lengths import report_long_rows
from training.run_plots import plot_loss
from training.run_record import (
    evaluation_record,
    final_weights_saved,
    last_checkpoint,
    read_record,
    update_record,
)
from training.tokenizer_files import complete_tokenizer_config


@dataclass
class TrainRequest:
    """What `python -m training train` was asked to do."""

    recipe: str | Path
    data: Path
    processed: Path
    gpus: int = 1
    resume: Path | None = None
    max_steps: int | None = None
    base_model: str | None = None
    overrides: list[str] = field(default_factory=list)
    runs_dir: Path = RUNS
    verbose: bool = False


def train(
    recipe: str | Path,
    data: str | Path,
    processed: str | Path,
    gpus: int = 1,
    resume: str | Path | None = None,
    max_steps: int | None = None,
    base_model: str | None = None,
    overrides: list[str] | None = None,
    runs_dir: str | Path = RUNS,
    started: float | None = None,
    verbose: bool = False,
) -> Path | None:
    """Train ``recipe``; returns the run dir when training finished, None when it failed.
    ``started``: when the command started (epoch seconds; default now), for run.json's phases.
    ``verbose``: show all of Axolotl's output on the console, not only progress and losses."""
    marks = PhaseMarks(start=started)
    marks.mark("launcher start-up")
    request = TrainRequest(
        recipe, Path(data), Path(processed), gpus, Path(resume) if resume else None,
        max_steps, base_model, list(overrides or []), Path(runs_dir), verbose,
    )  # fmt: skip
    try:
        return _train(request, marks)
    except (TrainError, PrepareError, preflight.PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def _train(request: TrainRequest, marks: PhaseMarks) -> Path | None:
    token = hub_token()
    secrets = [token] if token else []
    if request.resume:
        run_dir, recipe_file, config = _resume_run(request, token)
    else:
        run_dir, recipe_file, config = _new_run(request, token, marks)
    _ensure_base_model(config)
    _check_deepspeed(config, request.gpus)
    config_path = run_dir / "config.yml"
    write_config(config, config_path, recipe_file)
    say(f"run directory: {repo_relative(run_dir)}")
    (run_dir / MARKS_FILE).unlink(missing_ok=True)  # a resumed run's marks are this session's
    marks.mark("run set-up: config, run record, hardware")
    code, seconds, finished = _launch(run_dir, config_path, request, secrets)
    marks.mark("axolotl process exit")
    plot = _finish(run_dir, config, code, seconds, finished, secrets, marks)
    _record_phases(run_dir, marks)
    _report(run_dir, config, finished, code, plot)
    return run_dir if finished else None


def _resume_run(request: TrainRequest, token: str | None) -> tuple[Path, Path, dict[str, Any]]:
    run_dir = request.resume
    if not (run_dir / "run.json").is_file() or not (run_dir / "config.yml").is_file():
        raise TrainError(f"{run_dir}: not a run directory (no run.json / config.yml)")
    record = read_record(run_dir)
    if Path(request.recipe).stem != record["recipe"]:
        say(f"resuming {run_dir} (recipe {record['recipe']}; {request.recipe} ignored)")
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        raise TrainError(f"{run_dir}: no checkpoint-*/ with trainer_state.json to resume from")
    config = load_config(run_dir / "config.yml")
    processed = REPO / record["processed_dir"]
    ensure_same_data(processed, record["data_sha256"], request.data, run_dir)
    # The run keeps its hub decision; a hub that went away since only turns pushes off.
    repo = config.get("hub_model_id")
    if repo:
        repo = hub_repo(run_dir.name, token, repo_id=repo)
    set_hub(config, repo)
    apply_overrides(config, request.max_steps, request.overrides)
    preflight.check(config, record["recipe"], request.gpus, token)
    config["resume_from_checkpoint"] = repo_relative(checkpoint)
    say(f"resuming from {repo_relative(checkpoint)}")
    update_record(run_dir, hub_repo=repo, status="running", resumed=now())
    return run_dir, REPO / record["recipe_file"], config


def _new_run(
    request: TrainRequest, token: str | None, marks: PhaseMarks
) -> tuple[Path, Path, dict[str, Any]]:
    recipe_file, recipe_config = load_recipe(request.recipe)
    parsed = [parse_override(item) for item in request.overrides]
    planned = preflight.planned_config(recipe_config, request.base_model, parsed)
    preflight.check(planned, recipe_file.stem, request.gpus, token)  # before anything is written
    marks.mark("preflight: GPU, memory, base model")
    manifest = ensure_processed(request.data, request.processed)
    marks.mark("data: prepare splits (or check they are current)")
    report_long_rows(planned, request.processed, say)
    marks.mark("data: rows longer than sequence_len counted")
    run_dir = _new_run_dir(request.runs_dir, recipe_file.stem)
    repo = hub_repo(run_dir.name, token)
    marks.mark("hub decision")
    config = resolve_config(
        recipe_config, run_dir, request.processed, request.gpus, repo, request.max_steps,
        request.base_model, request.overrides,
    )  # fmt: skip
    run_dir.mkdir(parents=True)
    update_record(
        run_dir,
        recipe=recipe_file.stem,
        recipe_file=repo_relative(recipe_file),
        base_model=config["base_model"],
        processed_dir=repo_relative(request.processed),
        test_file=repo_relative(request.processed / "test.jsonl"),
        data_sha256=manifest["input"]["sha256"],
        system_prompt=manifest.get("system_prompt"),
        chat_template=config.get("chat_template"),
        started=now(), finished=None, train_seconds=None, status="running",
        hardware=hardware(request.gpus),
        hub_repo=repo,
    )  # fmt: skip
    return run_dir, recipe_file, config


def _check_deepspeed(config: dict[str, Any], gpus: int) -> None:
    if gpus > 1 and config.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise TrainError(
            f"--gpus {gpus} trains through DeepSpeed ZeRO-2, which is not installed here: "
            "`pip install deepspeed` (the Docker image has it), or pass "
            "--override deepspeed=null for plain DDP"
        )


def _launch(
    run_dir: Path, config_path: Path, request: TrainRequest, secrets: list[str]
) -> tuple[int, float, bool]:
    """Axolotl in a child process: (exit code, seconds, whether the final weights were saved)."""
    session_start = time.time()
    started = time.monotonic()
    rel = repo_relative(run_dir)
    say(f"axolotl's full output: {rel}/train.log (console: progress, losses, errors)")
    try:
        command = axolotl_command(config_path, request.gpus)
        code = run_logged(command, run_dir / "train.log", secrets, request.gpus, request.verbose)
    except KeyboardInterrupt:
        update_record(run_dir, status="interrupted")
        say(f"interrupted; continue with: --resume {rel}")
        raise
    # Finished = the final adapter is on disk; anything failing after it (the final hub push,
    # Axolotl's own card upload) must not turn a finished training into a failed run.
    saved = final_weights_saved(run_dir, since=session_start)
    return code, round(time.monotonic() - started, 1), code == 0 or saved


def _finish(
    run_dir: Path, config: dict[str, Any], code: int, seconds: float, finished: bool,
    secrets: list[str], marks: PhaseMarks,
) -> Path | None:  # fmt: skip
    """After Axolotl: status, loss plot, token scrub, run record, model card; loss.png or None."""
    status = "finished" if code == 0 else "failed"
    if finished and code != 0:
        # Axolotl's only work after saving the final adapter is the hub upload (and the card).
        status = (
            "finished, final hub push failed"
            if config.get("hub_model_id")
            else f"finished, axolotl then exited with code {code}"
        )
        say(f"WARNING {status}; everything is on disk (see train.log)")
    plot = plot_loss(run_dir)
    marks.mark("loss plot")
    for leak in scrub_run_dir(run_dir, secrets):
        say(f"WARNING {leak} contains the hub token: delete it before sharing the run")
    marks.mark("token scrub of the run directory")
    previous = float(read_record(run_dir).get("train_seconds") or 0)
    update_record(
        run_dir,
        status=status,
        finished=now() if finished else None,
        train_seconds=round(previous + seconds, 1),  # the whole axolotl command, wall clock
        trainer_runtime_seconds=trainer_runtime(run_dir / "train.log"),  # its training loop
        **evaluation_record(run_dir, config),
    )
    if finished:
        complete_tokenizer_config(run_dir)  # every later load of the run's tokenizer is faster
        # After the final save: peft/axolotl write a README.md of their own, ours replaces it
        # (and is pushed when hub pushes are on). Warns, never fails the run.
        refresh_model_card(run_dir)
        marks.mark("model card")
    return plot


def _ensure_base_model(config: dict[str, Any]) -> None:
    """The tiny model is built on first use, so `make train RECIPE=tiny-cpu` works on a fresh
    clone; other local base models must exist."""
    base = config.get("base_model", "")
    path = REPO / base
    if not base.startswith("models/built/") or path.exists():
        return
    if path.resolve() == TINY_OUT.resolve():
        say(f"building the tiny model first: {base}")
        build_tiny(TINY_OUT)
        return
    raise TrainError(
        f"base model {base} not found: build it with `python -m training build-model --arch "
        f"models/architectures/{Path(base).name}.json --out {base} --data <train jsonl>`"
    )


def _new_run_dir(runs_dir: Path, recipe_name: str) -> Path:
    """runs/<recipe>-<YYYYMMDD_HHMMSS>; two runs started in one second never share one."""
    while True:
        run_dir = runs_dir / f"{recipe_name}-{datetime.now().strftime('%Y%m%d_%H%M%S')}"
        if not run_dir.exists():
            return run_dir
        time.sleep(1)


def _record_phases(run_dir: Path, marks: PhaseMarks) -> None:
    """run.json's "phases": the launcher's marks and the Axolotl process's, as one timeline
    from the command's start, with a summary by kind; printed as one line per kind."""
    inner = PhaseMarks.read(run_dir / MARKS_FILE) or {"marks": []}
    timeline = phases(marks.start, marks.marks + inner["marks"])
    kinds = summary(timeline)
    total = round(sum(p["seconds"] for p in timeline), 1)
    update_record(
        run_dir,
        command_started=marks.start,
        command_seconds=total,
        phases=timeline,
        phase_summary=kinds,
        phase_facts=inner.get("meta", {}),
    )
    say(f'where the {total} s went (run.json "phases"):')
    for kind, row in sorted(kinds.items(), key=lambda item: -item[1]["seconds"]):
        peak = f", peak {row['peak_gib']} GiB" if row["peak_gib"] is not None else ""
        count = f" x{row['count']}" if row["count"] > 1 else ""
        say(f"  {row['seconds']:8.1f} s  {kind}{count}{peak}")


def _report(run_dir: Path, config: dict[str, Any], finished: bool, code: int, plot: Path | None):
    rel = repo_relative(run_dir)
    if not finished:
        say(f"axolotl exited with code {code}; see {rel}/train.log")
        if last_checkpoint(run_dir):
            say(f"continue from its last checkpoint: --resume {rel}")
        return
    lines = [
        f"done: {rel}/",
        f"  adapter + tokenizer   {rel}/adapter_model.safetensors, tokenizer.json",
        f"  checkpoints           {rel}/checkpoint-*/",
        f"  resolved config       {rel}/config.yml   run record: {rel}/run.json",
        f"  log                   {rel}/train.log",
        f"  loss curve            {rel}/loss.png"
        if plot
        else "  loss curve            (no losses logged)",
        f"  TensorBoard           tensorboard --logdir {rel}",
    ]
    if config.get("hub_model_id"):
        failed = " (final push failed: see train.log)" if code else ""
        lines.append(f"  hub                   {hub_url(config['hub_model_id'])}{failed}")
    for line in lines:
        say(line)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe name or path")
    parser.add_argument("--data", type=Path, default=Path("data/both_rel_instruct_all.jsonl"))
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--resume", type=Path, metavar="RUNDIR", help="continue runs/<dir>")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="all of Axolotl's output on the console (it is always in the run's train.log)",
    )
    parser.add_argument("--base-model", help="train this model (path or hub id) instead")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key (YAML value), repeatable",
    )
    parser.add_argument("--runs-dir", type=Path, default=RUNS, metavar="DIR", help="default runs/")


def run(args: argparse.Namespace) -> int:
    run_dir = train(
        args.recipe,
        data=args.data,
        processed=args.processed,
        gpus=args.gpus,
        resume=args.resume,
        max_steps=args.max_steps,
        base_model=args.base_model,
        overrides=args.override,
        runs_dir=args.runs_dir,
        started=process_started(),
        verbose=args.verbose,
    )
    return 0 if run_dir else 1
