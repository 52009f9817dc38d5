"""The training launcher behind `make train`: recipe + data -> runs/<recipe>-<YYYYMMDD_HHMMSS>/.

1. Prepares the data first when the processed dir is missing or was built from other bytes.
2. Writes the resolved Axolotl config (data paths, output dir, hub id filled in) and run.json.
3. Decides about the Hugging Face Hub once, before training: with a token and a reachable hub
   that lets us create the run's repository, Axolotl pushes every checkpoint as it is saved and
   the final adapter + tokenizer at the end; otherwise it says why, once, and trains locally.
4. Runs Axolotl's own CLI in a subprocess (accelerate + DeepSpeed ZeRO-2 for several GPUs),
   tees its output to train.log with any token scrubbed, then plots loss.png.

`--resume runs/<dir>` continues a killed run from its last checkpoint in the same directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from preprocessing.errors import PrepareError
from training import preflight
from training.build_model import REPO, SAMPLE_DATA, TINY_OUT, build_tiny
from training.console import Console
from training.phases import MARKS_FILE, PhaseMarks, phases, summary
from training.row_lengths import report_long_rows

RECIPES = REPO / "recipes"
RUNS = REPO / "runs"
ZERO2 = RECIPES / "deepspeed" / "zero2.json"
DEMO_PROCESSED = REPO / "data" / "processed-sample"
HUB_TIMEOUT_S = 20
# Axolotl logs this after the final adapter is on disk; anything failing later (the final hub
# push, the model card upload) must not turn a finished training into a failed run.
SAVED_MARKER = "Model successfully saved to"
HUB_KEYS = ("hub_model_id", "hub_strategy", "hub_revision", "push_dataset_to_hub")
# F1 scalars an evaluation may log (eval.training_f1): drawn on loss.png's right axis.
F1_MODES = ("normalized", "strict")
F1_COLORS = ("tab:green", "tab:purple")  # the loss curves take the first colours
WANDB_KEYS = ("wandb_project", "wandb_entity", "wandb_name", "wandb_mode", "wandb_log_model")


class TrainError(RuntimeError):
    """A problem the user can fix (missing recipe, data, checkpoint); the message says what."""


def _say(message: str) -> None:
    print(f"[train] {message}", flush=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _rel(path: Path) -> str:
    """Repo-relative where possible: run dirs stay valid when the checkout moves."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.as_posix()


def recipe_path(recipe: str | Path) -> Path:
    path = Path(recipe)
    if path.suffix in (".yml", ".yaml"):
        if not path.is_file():
            raise TrainError(f"{path}: recipe file not found")
        return path
    path = RECIPES / f"{recipe}.yml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yml")))
        raise TrainError(f"unknown recipe {recipe!r} (recipes/: {known})")
    return path


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as err:
        raise TrainError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise TrainError(f"{path}: expected a mapping of Axolotl config keys")
    return config


# ---- data ----------------------------------------------------------------------------------


def ensure_processed(data: Path, processed: Path) -> dict[str, Any]:
    """Run `prepare` when ``processed`` is missing or stale; returns its manifest."""
    from preprocessing.prepare import HOW_TO_GET_DATA, is_stale, prepare

    files = [processed / name for name in ("train.jsonl", "validation.jsonl", "manifest.json")]
    if not data.is_file():
        if all(f.is_file() for f in files):
            _say(f"{data} not found; training on the processed data already in {processed}")
            return json.loads((processed / "manifest.json").read_text("utf-8"))
        raise TrainError(f"{data}: input data not found. {HOW_TO_GET_DATA}")
    if is_stale(data, processed):
        _say(f"preparing {_rel(data)} -> {_rel(processed)} (missing or built from other data)")
        return prepare(data, processed)
    _say(f"processed data up to date: {_rel(processed)}")
    return json.loads((processed / "manifest.json").read_text("utf-8"))


def ensure_same_data(processed: Path, sha256: str, data: Path, run_dir: Path) -> None:
    """A resumed run trains on exactly the data it started with: its processed dir as it was,
    rebuilt from ``data`` only if that is the very file the run was prepared from."""
    from preprocessing.prepare import prepare, sha256_hex

    manifest_path = processed / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text("utf-8"))
        if manifest.get("input", {}).get("sha256") == sha256:
            return
    if data.is_file() and sha256_hex(data.read_bytes()) == sha256:
        _say(f"rebuilding {processed} from {data} (the data {run_dir.name} was trained on)")
        prepare(data, processed)
        return
    raise TrainError(
        f"{processed} no longer holds the data {run_dir} was trained on, and {data} is not that "
        "data either: resume needs the same data (or start a new run)"
    )


# ---- hub -----------------------------------------------------------------------------------


def _hub_url(repo: str) -> str:
    return f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{repo}"


def hub_token() -> str | None:
    """HF_TOKEN, else the token of a logged-in huggingface-hub. Never printed."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # no token, whatever the reason
        return None


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def hub_repo(name: str, token: str | None, repo_id: str | None = None) -> str | None:
    """'<user>/<name>' (or ``repo_id``) if the hub answers and lets us create it; else None,
    having said why."""
    if not token:
        _say("hub: no HF_TOKEN and no huggingface-cli login -> pushes off, training locally")
        return None

    def probe() -> str:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = repo_id or f"{os.environ.get('HF_USERNAME') or api.whoami()['name']}/{name}"
        # Creating it now is the real test: a read-only token or a wrong org fails here, not
        # after the first checkpoint. Axolotl creates its repos private, so do we.
        api.create_repo(repo, private=True, exist_ok=True)
        return repo

    # A hub that never answers must not hang the run: give up after HUB_TIMEOUT_S (a daemon
    # thread, so a request still hanging then cannot hold the process open either).
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["repo"] = probe()
        except Exception as err:  # any failure means: train locally
            outcome["error"] = err

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    if "repo" in outcome:
        _say(f"hub: pushing checkpoints and the final adapter to {_hub_url(outcome['repo'])}")
        return outcome["repo"]
    error = outcome.get("error")
    reason = (
        _scrub(f"{type(error).__name__}: {error}", [token]).splitlines()[0][:300]
        if error
        else f"no answer within {HUB_TIMEOUT_S} s"
    )
    _say(f"WARNING hub: {_hub_url('')} unreachable or refused ({reason}) -> pushes off, local only")
    return None


# ---- config --------------------------------------------------------------------------------


def wandb_settings(run_dir: Path) -> dict[str, Any]:
    """W&B only when WANDB_PROJECT is set; without an API key it logs offline (never blocks)."""
    project = os.environ.get("WANDB_PROJECT")
    if not project:
        return {}
    if importlib.util.find_spec("wandb") is None:
        _say("WARNING WANDB_PROJECT is set but wandb is not installed: TensorBoard only")
        return {}
    settings = {"wandb_project": project, "wandb_name": run_dir.name}
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
    if os.environ.get("WANDB_MODE") == "offline" or not (
        os.environ.get("WANDB_API_KEY") or logged_in
    ):
        settings["wandb_mode"] = "offline"
        _say("W&B: no API key (WANDB_API_KEY / wandb login) -> logging offline into the run dir")
    return settings


def _set_data_paths(config: dict[str, Any], processed: Path) -> None:
    """Point every dataset at the same-named file in ``processed``."""
    for key in ("datasets", "test_datasets"):
        for dataset in config.get(key) or []:
            dataset["path"] = _rel(processed / Path(dataset["path"]).name)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TrainError(f"--override {item!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def resolve_config(
    recipe_config: dict[str, Any],
    run_dir: Path,
    processed: Path,
    gpus: int,
    hub_repo_id: str | None,
    max_steps: int | None = None,
    base_model: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The config Axolotl actually trains with: the recipe plus paths, hub, tracking, GPUs."""
    config = json.loads(json.dumps(recipe_config))  # deep copy
    _set_data_paths(config, processed)
    config["output_dir"] = _rel(run_dir)
    # "_"-prefixed: the Trainer's hub uploads skip it; tokenised data is rebuilt in seconds.
    config["dataset_prepared_path"] = _rel(run_dir / "_prepared")
    config["use_tensorboard"] = True
    if base_model:
        config["base_model"] = base_model
        config.pop("base_model_config", None)
        config.pop("tokenizer_config", None)
    if max_steps:
        config["max_steps"] = max_steps
    for key in HUB_KEYS:
        config.pop(key, None)
    if hub_repo_id:
        config["hub_model_id"] = hub_repo_id
        config["hub_strategy"] = "every_save"  # push each checkpoint as it is saved
    for key in WANDB_KEYS:
        config.pop(key, None)
    config.update(wandb_settings(run_dir))
    if gpus > 1 and not config.get("fsdp") and not config.get("fsdp_config"):
        config.setdefault("deepspeed", _rel(ZERO2))
    for item in overrides or []:
        key, value = _parse_override(item)
        config[key] = value
    return config


def _write_config(config: dict[str, Any], path: Path, recipe: Path) -> None:
    header = (
        f"# Resolved from {_rel(recipe)} by `python -m training train` ({_now()}).\n"
        "# This is exactly what Axolotl trained with; the recipe file explains each key.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, width=100), "utf-8")


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    checkpoints = [p for p in checkpoints if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


# ---- run record ----------------------------------------------------------------------------


def _torch_cuda_build() -> str | None:
    """The CUDA version torch was built for, read from torch/version.py without importing torch
    (an import costs the launcher seconds; Axolotl's process imports it anyway)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    found = re.search(r"^cuda\b.*?=\s*'([^']+)'", version_py.read_text("utf-8"), re.M)
    return found.group(1) if found else None


def gpu_names(gpus: int) -> list[str]:
    """Names of the GPUs the run is given ([] without an NVIDIA driver or nvidia-smi)."""
    return [gpu.name for gpu in (preflight.nvidia_smi_gpus() or [])][: max(gpus, 1)]


def hardware(gpus: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpus_requested": gpus,
        "gpu_names": gpu_names(gpus),
    }
    if info["gpu_names"]:
        info["cuda"] = _torch_cuda_build()
    for package in ("torch", "axolotl"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:  # informational only
            pass
    return info


def _update_json(path: Path, **values: Any) -> dict[str, Any]:
    record = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    record.update(values)
    path.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return record


# ---- running axolotl -----------------------------------------------------------------------


def axolotl_command(config_path: Path, gpus: int) -> list[str]:
    if gpus <= 1:
        return [sys.executable, "-m", "axolotl.cli.train", str(config_path)]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(gpus), "--num_machines", "1", "--dynamo_backend", "no",
        "-m", "axolotl.cli.train", str(config_path),
    ]  # fmt: skip


def visible_devices(gpus: int, current: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a run on ``gpus`` GPUs: the first ``gpus`` of the ones the user
    made visible (all of the machine's when unset). A single process that sees several GPUs
    spreads a 4-bit model over them (device_map "auto"), which Axolotl's LoRA kernels refuse
    ("mat2 is on cuda:1"); accelerate's N processes likewise use devices 0..N-1."""
    if current is not None and not current.strip():
        return current  # GPUs hidden on purpose: leave them hidden
    ids = [d.strip() for d in current.split(",") if d.strip()] if current else []
    return ",".join((ids or [str(i) for i in range(gpus)])[: max(gpus, 1)])


def run_logged(
    command: list[str],
    log_path: Path,
    secrets: list[str],
    gpus: int | None = None,
    verbose: bool = False,
) -> tuple[int, bool]:
    """Run ``command`` from the repo root; all its output (scrubbed) goes to ``log_path``, the
    console gets what training/console.py lets through (all of it with ``verbose``); returns
    (exit code, whether Axolotl reported the final model saved)."""
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(gpus, env.get("CUDA_VISIBLE_DEVICES"))
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("WANDB_DIR", str(log_path.parent.resolve()))  # W&B files stay in the run
    env["PYTHONUNBUFFERED"] = "1"
    saved = False
    with log_path.open("a", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        console = Console(verbose=verbose)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = _scrub(line, secrets)
                saved = saved or SAVED_MARKER in line
                console.feed(line)
                log.write(line)
            return process.wait(), saved
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        finally:
            console.close()


def trainer_runtime(log_path: Path) -> float | None:
    """Seconds of the Trainer's loop as it reported them (summed over resumed sessions)."""
    found = re.findall(r"'train_runtime': '?([\d.]+)", log_path.read_text("utf-8", "replace"))
    return round(sum(float(value) for value in found), 1) if found else None


def evaluation_record(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """run.json's "evaluations" (step, epoch and every eval_* number the Trainer logged, per
    in-training evaluation) and "kept_checkpoint" (which checkpoint the final adapter is, by
    which metric; None when the last step is kept), from the last checkpoint's trainer_state."""
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        return {}
    state = json.loads((checkpoint / "trainer_state.json").read_text("utf-8"))
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


def scrub_run_dir(run_dir: Path, secrets: list[str]) -> list[Path]:
    """Last line of defence: no file under the run dir may hold a token. Text files are
    rewritten; anything else holding one is reported (returned)."""
    leaks = []
    needles = [s.encode() for s in secrets if s]
    if not needles:
        return leaks
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.stat().st_size > 200_000_000:
            continue
        data = path.read_bytes()
        if not any(n in data for n in needles):
            continue
        try:
            path.write_text(_scrub(data.decode("utf-8"), secrets), "utf-8")
        except UnicodeDecodeError:
            leaks.append(path)
    return leaks


# ---- loss plot -----------------------------------------------------------------------------


def loss_history(run_dir: Path) -> dict[str, dict[int, float]]:
    """{'train': {step: loss}, 'eval': {step: loss}} from the TensorBoard events (all of them,
    so a resumed run plots as one curve), else from the last checkpoint's trainer_state.json;
    plus {'eval_<mode>_micro_f1': {step: F1}} for the F1 scalars an evaluation logged, if any."""
    history: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
    tags = {"train/loss": "train", "eval/loss": "eval"}
    tags |= {f"eval/{mode}_micro_f1": f"eval_{mode}_micro_f1" for mode in F1_MODES}
    event_files = sorted(run_dir.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if event_files:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for events in event_files:
            accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
            accumulator.Reload()
            for tag, name in tags.items():
                if tag in accumulator.Tags().get("scalars", []):
                    for event in accumulator.Scalars(tag):
                        history.setdefault(name, {})[event.step] = event.value
    if not history["train"]:
        checkpoint = last_checkpoint(run_dir)
        if checkpoint:
            state = json.loads((checkpoint / "trainer_state.json").read_text("utf-8"))
            for entry in state.get("log_history", []):
                if "loss" in entry:
                    history["train"][entry["step"]] = entry["loss"]
                if "eval_loss" in entry:
                    history["eval"][entry["step"]] = entry["eval_loss"]
                for name in set(tags.values()) & set(entry):
                    history.setdefault(name, {})[entry["step"]] = entry[name]
    return history


def plot_loss(run_dir: Path) -> Path | None:
    history = loss_history(run_dir)
    if not history["train"] and not history["eval"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("train", "-"), ("eval", "o-")):
        points = sorted(history[name].items())
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"{name} loss", markersize=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (cross-entropy on assistant tokens)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    f1_curves = {name: points for name, points in history.items() if name.endswith("_f1")}
    if any(f1_curves.values()):  # F1 during training: on its own axis, 0..1, on the right
        f1_ax = ax.twinx()
        for (name, points), color in zip(sorted(f1_curves.items()), F1_COLORS, strict=False):
            steps, values = zip(*sorted(points.items()), strict=True)
            label = name.removeprefix("eval_").replace("_", " ").replace("f1", "F1")
            f1_ax.plot(steps, values, "s--", color=color, label=label, markersize=4)
        f1_ax.set_ylim(0, 1)
        f1_ax.set_ylabel("F1 on validation rows")
        more = f1_ax.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    ax.legend(*handles)
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---- the command ---------------------------------------------------------------------------


def _ensure_base_model(config: dict[str, Any]) -> None:
    """The tiny model is built on first use, so `make train RECIPE=tiny-cpu` works on a fresh
    clone; other local base models must exist."""
    base = config.get("base_model", "")
    path = REPO / base
    if not base.startswith("models/built/") or path.exists():
        return
    if path.resolve() == TINY_OUT.resolve():
        _say(f"building the tiny model first: {base}")
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
    try:
        return _train(
            recipe,
            Path(data),
            Path(processed),
            gpus,
            resume,
            max_steps,
            base_model,
            overrides,
            Path(runs_dir),
            marks,
            verbose,
        )
    except (TrainError, PrepareError, preflight.PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def _train(
    recipe: str | Path,
    data: Path,
    processed: Path,
    gpus: int,
    resume: str | Path | None,
    max_steps: int | None,
    base_model: str | None,
    overrides: list[str] | None,
    runs_dir: Path,
    marks: PhaseMarks,
    verbose: bool = False,
) -> Path | None:
    token = hub_token()
    secrets = [token] if token else []

    if resume:
        run_dir = Path(resume)
        record_path = run_dir / "run.json"
        if not record_path.is_file() or not (run_dir / "config.yml").is_file():
            raise TrainError(f"{run_dir}: not a run directory (no run.json / config.yml)")
        record = json.loads(record_path.read_text("utf-8"))
        recipe_file = REPO / record["recipe_file"]
        if Path(recipe).stem != record["recipe"]:
            _say(f"resuming {run_dir} (recipe {record['recipe']}; {recipe} ignored)")
        checkpoint = last_checkpoint(run_dir)
        if checkpoint is None:
            raise TrainError(f"{run_dir}: no checkpoint-*/ with trainer_state.json to resume from")
        config = load_yaml(run_dir / "config.yml")
        ensure_same_data(REPO / record["processed_dir"], record["data_sha256"], data, run_dir)
        # The run keeps its hub decision; a hub that went away since only turns pushes off.
        repo = config.get("hub_model_id")
        if repo:
            repo = hub_repo(run_dir.name, token, repo_id=repo)
        for key in HUB_KEYS:
            config.pop(key, None)
        if repo:
            config.update(hub_model_id=repo, hub_strategy="every_save")
        if max_steps:
            config["max_steps"] = max_steps
        for item in overrides or []:
            key, value = _parse_override(item)
            config[key] = value
        preflight.check(config, record["recipe"], gpus, token)
        config["resume_from_checkpoint"] = _rel(checkpoint)
        _say(f"resuming from {_rel(checkpoint)}")
        _update_json(record_path, hub_repo=repo, status="running", resumed=_now())
    else:
        recipe_file = recipe_path(recipe)
        recipe_config = load_yaml(recipe_file)
        parsed = [_parse_override(item) for item in overrides or []]
        planned = preflight.planned_config(recipe_config, base_model, parsed)
        preflight.check(planned, recipe_file.stem, gpus, token)  # before anything is written
        marks.mark("preflight: GPU, memory, base model")
        manifest = ensure_processed(data, processed)
        marks.mark("data: prepare splits (or check they are current)")
        report_long_rows(planned, processed, _say)
        marks.mark("data: rows longer than sequence_len counted")
        run_dir = _new_run_dir(runs_dir, recipe_file.stem)
        repo = hub_repo(run_dir.name, token)
        marks.mark("hub decision")
        config = resolve_config(
            recipe_config, run_dir, processed, gpus, repo, max_steps, base_model, overrides
        )
        run_dir.mkdir(parents=True)
        record = {
            "recipe": recipe_file.stem,
            "recipe_file": _rel(recipe_file),
            "base_model": config["base_model"],
            "processed_dir": _rel(processed),
            "test_file": _rel(processed / "test.jsonl"),
            "data_sha256": manifest["input"]["sha256"],
            "system_prompt": manifest.get("system_prompt"),
            "chat_template": config.get("chat_template"),
            "started": _now(),
            "finished": None,
            "train_seconds": None,
            "status": "running",
            "hardware": hardware(gpus),
            "hub_repo": repo,
        }
        _update_json(run_dir / "run.json", **record)

    _ensure_base_model(config)
    if gpus > 1 and config.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise TrainError(
            f"--gpus {gpus} trains through DeepSpeed ZeRO-2, which is not installed here: "
            "`pip install deepspeed` (the Docker image has it), or pass "
            "--override deepspeed=null for plain DDP"
        )
    config_path = run_dir / "config.yml"
    _write_config(config, config_path, recipe_file)
    _say(f"run directory: {_rel(run_dir)}")
    (run_dir / MARKS_FILE).unlink(missing_ok=True)  # a resumed run's marks are this session's
    marks.mark("run set-up: config, run record, hardware")

    started = time.monotonic()
    try:
        command = axolotl_command(config_path, gpus)
        _say(
            f"axolotl's full output: {_rel(run_dir)}/train.log (console: progress, losses, errors)"
        )
        code, saved = run_logged(
            command, run_dir / "train.log", secrets, gpus=gpus, verbose=verbose
        )
    except KeyboardInterrupt:
        _update_json(run_dir / "run.json", status="interrupted")
        _say(f"interrupted; continue with: --resume {_rel(run_dir)}")
        raise
    seconds = round(time.monotonic() - started, 1)
    marks.mark("axolotl process exit")
    previous = float(
        json.loads((run_dir / "run.json").read_text("utf-8")).get("train_seconds") or 0
    )

    finished = code == 0 or saved
    status = "finished" if code == 0 else "failed"
    if saved and code != 0:
        # Axolotl's only work after saving the final adapter is the hub upload (and the card).
        status = (
            "finished, final hub push failed"
            if config.get("hub_model_id")
            else (f"finished, axolotl then exited with code {code}")
        )
        _say(f"WARNING {status}; everything is on disk (see train.log)")
    plot = plot_loss(run_dir)
    marks.mark("loss plot")
    leaks = scrub_run_dir(run_dir, secrets)
    for leak in leaks:
        _say(f"WARNING {leak} contains the hub token: delete it before sharing the run")
    marks.mark("token scrub of the run directory")
    _update_json(
        run_dir / "run.json",
        status=status,
        finished=_now() if finished else None,
        train_seconds=round(previous + seconds, 1),  # the whole axolotl command, wall clock
        trainer_runtime_seconds=trainer_runtime(run_dir / "train.log"),  # its training loop
        **evaluation_record(run_dir, config),
    )
    if finished:
        # After the final save: peft/axolotl write a README.md of their own, ours replaces it
        # (and is pushed when hub pushes are on). Warns, never fails the run.
        from eval.generate import refresh_model_card

        refresh_model_card(run_dir)
        marks.mark("model card")
    _record_phases(run_dir, marks)
    _report(run_dir, config, finished, code, plot)
    return run_dir if finished else None


def _record_phases(run_dir: Path, marks: PhaseMarks) -> None:
    """run.json's "phases": the launcher's marks and the Axolotl process's, as one timeline
    from the command's start, with a summary by kind; printed as one line per kind."""
    inner = PhaseMarks.read(run_dir / MARKS_FILE) or {"marks": []}
    timeline = phases(marks.start, marks.marks + inner["marks"])
    kinds = summary(timeline)
    total = round(sum(p["seconds"] for p in timeline), 1)
    _update_json(
        run_dir / "run.json",
        command_started=marks.start,
        command_seconds=total,
        phases=timeline,
        phase_summary=kinds,
        phase_facts=inner.get("meta", {}),
    )
    _say(f'where the {total} s went (run.json "phases"):')
    for kind, row in sorted(kinds.items(), key=lambda item: -item[1]["seconds"]):
        peak = f", peak {row['peak_gib']} GiB" if row["peak_gib"] is not None else ""
        count = f" x{row['count']}" if row["count"] > 1 else ""
        _say(f"  {row['seconds']:8.1f} s  {kind}{count}{peak}")


def _report(run_dir: Path, config: dict[str, Any], finished: bool, code: int, plot: Path | None):
    rel = _rel(run_dir)
    if not finished:
        _say(f"axolotl exited with code {code}; see {rel}/train.log")
        if last_checkpoint(run_dir):
            _say(f"continue from its last checkpoint: --resume {rel}")
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
        lines.append(f"  hub                   {_hub_url(config['hub_model_id'])}{failed}")
    for line in lines:
        _say(line)


def demo() -> Path | None:
    """`make demo`: the repo's sample data -> tiny-cpu training, on any machine, no GPU."""
    run_dir = train("tiny-cpu", data=SAMPLE_DATA, processed=DEMO_PROCESSED, gpus=1)
    if run_dir is None:
        return None
    from eval.generate import resolve_run, run_eval

    _say("eval: generating on the sample's test split and scoring it")
    run_eval(resolve_run(run_dir, None, False))
    rel = _rel(run_dir)
    _say(f"demo done. report: {rel}/eval/report.md  metrics: {rel}/eval/metrics.json")
    _say("a random tiny model's F1 is meaningless: this shows the pipeline, not a result")
    _say(f"model card: {rel}/README.md   next: make train RECIPE=llama3b-qlora (GPU)")
    return run_dir
