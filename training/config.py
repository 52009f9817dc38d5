"""The config Axolotl trains with: a recipe plus the run's paths, hub id, tracking, GPUs and the
user's overrides; written as the run's config.yml."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import yaml

from preprocessing.files import atomic_write_text, now, repo_relative
from training.console import say
from training.errors import TrainError
from training.recipes import RECIPES

ZERO2 = RECIPES / "deepspeed" / "zero2.json"
HUB_KEYS = ("hub_model_id", "hub_strategy", "hub_revision", "push_dataset_to_hub")
WANDB_KEYS = ("wandb_project", "wandb_entity", "wandb_name", "wandb_mode", "wandb_log_model")


def wandb_settings(run_dir: Path) -> dict[str, Any]:
    """W&B only when WANDB_PROJECT is set; without an API key it logs offline (never blocks)."""
    project = os.environ.get("WANDB_PROJECT")
    if not project:
        return {}
    if importlib.util.find_spec("wandb") is None:
        say("WARNING WANDB_PROJECT is set but wandb is not installed: TensorBoard only")
        return {}
    settings = {"wandb_project": project, "wandb_name": run_dir.name}
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
    if os.environ.get("WANDB_MODE") == "offline" or not (
        os.environ.get("WANDB_API_KEY") or logged_in
    ):
        settings["wandb_mode"] = "offline"
        say("W&B: no API key (WANDB_API_KEY / wandb login) -> logging offline into the run dir")
    return settings


def parse_override(item: str) -> tuple[str, Any]:
    """KEY=VALUE (the value read as YAML) -> (key, value); TrainError otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TrainError(f"--override {item!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def set_hub(config: dict[str, Any], hub_repo_id: str | None) -> None:
    """Hub pushes to ``hub_repo_id`` (each checkpoint as it is saved), or none at all."""
    for key in HUB_KEYS:
        config.pop(key, None)
    if hub_repo_id:
        config.update(hub_model_id=hub_repo_id, hub_strategy="every_save")


def apply_overrides(
    config: dict[str, Any], max_steps: int | None, overrides: list[str] | None
) -> None:
    if max_steps:
        config["max_steps"] = max_steps
    for item in overrides or []:
        key, value = parse_override(item)
        config[key] = value


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
    for key in ("datasets", "test_datasets"):  # every dataset: the same-named processed file
        for dataset in config.get(key) or []:
            dataset["path"] = repo_relative(processed / Path(dataset["path"]).name)
    config["output_dir"] = repo_relative(run_dir)
    config["use_tensorboard"] = True
    if base_model:
        config["base_model"] = base_model
        config.pop("base_model_config", None)
        config.pop("tokenizer_config", None)
    set_hub(config, hub_repo_id)
    for key in WANDB_KEYS:
        config.pop(key, None)
    config.update(wandb_settings(run_dir))
    if gpus > 1 and not config.get("fsdp") and not config.get("fsdp_config"):
        config.setdefault("deepspeed", repo_relative(ZERO2))
    apply_overrides(config, max_steps, overrides)
    if "dataset_prepared_path" not in dict(parse_override(item) for item in overrides or []):
        config["dataset_prepared_path"] = repo_relative(prepared_dir(config, run_dir, processed))
    return config


def prepared_dir(config: dict[str, Any], run_dir: Path, processed: Path) -> Path:
    """Where Axolotl saves (and looks for) the tokenised datasets: shared by every run whose data,
    tokenizer and data settings are the same (training/prepared_cache.py); in the run dir when
    those cannot be fingerprinted. "_"-prefixed: the Trainer's hub uploads skip it."""
    from training.prepared_cache import shared_prepared_dir

    shared = shared_prepared_dir(config, processed)
    if shared is None:
        say("tokenised data: no fingerprint of the data or tokenizer, tokenising into the run dir")
        return run_dir / "_prepared"
    return shared


def write_config(config: dict[str, Any], path: Path, recipe: Path) -> None:
    """The run's config.yml, with a header saying where it came from."""
    header = (
        f"# Resolved from {repo_relative(recipe)} by `python -m training train` ({now()}).\n"
        "# This is exactly what Axolotl trained with; the recipe file explains each key.\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False, width=100))
