"""Merge a run's LoRA/QLoRA adapter into its base model: RUNDIR/merged/, no peft needed to load.

    python -m training merge runs/<recipe>-<timestamp>

Axolotl's own merge (`python -m axolotl.cli.merge_lora`) does the work, fed the run's resolved
config.yml with a few keys overridden for merging (see MERGE_OVERRIDES; the recipes are never
edited). Axolotl 0.19 merges shard by shard in the base model's dtype (bf16 for the real
recipes), never into a 4-bit model. For a QLoRA run it first rounds each base weight through
NF4 and back, so the merged linear layers are the weights the adapter was trained against;
note that it rounds the embeddings and lm_head too, which QLoRA training kept in bf16.
`--no-nf4-roundtrip` merges onto the original bf16 weights instead (what peft's
merge_and_unload on a bf16 base gives). To compare them on the test split, evaluate after each:
`python -m eval generate --run RUNDIR --merged`.
Axolotl copies the *base* model's tokenizer; afterwards the run's own tokenizer (with the chat
template used in training) replaces it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from preprocessing.files import REPO, FileFormatError, load_yaml
from training.tokenizer_files import complete_tokenizer_config

# Keys changed in the config handed to axolotl's merge, and why.
MERGE_OVERRIDES: dict[str, Any] = {
    # Axolotl's fused LoRA Triton kernels patch the model for training only; false (not unset)
    # so that axolotl does not auto-enable them when it loads the model.
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "lora_embedding_kernel": False,
    # Packing and flash attention only shape training batches; flash-attn may not be installed
    # where the merge runs (the merge works on CPU too).
    "sample_packing": False,
    "eval_sample_packing": False,
    "flash_attention": False,
    "deepspeed": None,
    "fsdp": None,
    "fsdp_config": None,
    # Axolotl starts a debug.log in output_dir while loading the config, and truncates the
    # existing one unless it thinks it is resuming: this keeps the training log and appends.
    "auto_resume_from_checkpoints": True,
    "resume_from_checkpoint": None,
}
# Plugin-provided training speedups (Liger, cut cross-entropy): dropped from the merge config,
# because registering a plugin imports its package and patches model classes.
_PLUGIN_KEY_PREFIXES = ("liger_", "cut_cross_entropy")

# Files that make up a tokenizer; the base model's are removed from merged/ before the run's
# tokenizer is saved there, so no stale file (e.g. a base chat_template.jinja) can win.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


class MergeError(RuntimeError):
    """A run directory that cannot be merged; the message says what is missing."""


def merge_config(run_dir: Path, nf4_roundtrip: bool = True) -> dict[str, Any]:
    """The run's config.yml with the merge overrides, pointed at the run directory."""
    path = run_dir / "config.yml"
    if not path.is_file():
        raise MergeError(f"{path}: missing; is {run_dir} a run directory?")
    try:
        config = load_yaml(path)
    except FileFormatError as error:
        raise MergeError(str(error)) from None
    if not config.get("base_model"):
        raise MergeError(f"{path}: no base_model")
    if config.get("adapter") not in ("lora", "qlora"):
        raise MergeError(f"{path}: adapter is {config.get('adapter')!r}; only lora/qlora merge")
    config = {
        key: value
        for key, value in config.items()
        if key != "plugins" and not key.startswith(_PLUGIN_KEY_PREFIXES)
    }
    config.update(MERGE_OVERRIDES)
    # Axolotl writes to <output_dir>/merged and reads the adapter from lora_model_dir: both are
    # this directory, wherever the run has been moved since training.
    config["output_dir"] = str(run_dir.resolve())
    config["lora_model_dir"] = str(run_dir.resolve())
    # Recipes name the tiny model repo-relative (models/built/...): make it cwd-independent.
    base = Path(str(config.get("base_model", "")))
    if not base.is_absolute() and not base.exists() and (REPO / base).exists():
        config["base_model"] = str(REPO / base)
    if not nf4_roundtrip:
        # Axolotl decides on the NF4 roundtrip from these two keys alone; the adapter files
        # (adapter_config.json) are the same for LoRA and QLoRA.
        config["adapter"], config["load_in_4bit"] = "lora", False
    return config


def _check_adapter(run_dir: Path) -> None:
    missing = [
        name
        for name in ("adapter_config.json", "adapter_model.safetensors")
        if not (run_dir / name).is_file()
    ]
    if missing:
        checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*"))
        hint = (
            f"; checkpoints present: {', '.join(checkpoints)} (training may not have "
            "finished: resume it)"
            if checkpoints
            else ""
        )
        raise MergeError(f"{run_dir}: no final adapter ({', '.join(missing)} missing){hint}")


def _install_run_tokenizer(run_dir: Path, merged: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    if not tokenizer.chat_template:
        raise MergeError(f"{run_dir}: the saved tokenizer has no chat template")
    for name in _TOKENIZER_FILES:
        (merged / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(merged)
    complete_tokenizer_config(merged)
    if AutoTokenizer.from_pretrained(merged).chat_template != tokenizer.chat_template:
        raise MergeError(f"{merged}: chat template differs from the run's after saving")


def merge(run_dir: str | Path, nf4_roundtrip: bool = True) -> Path:
    """Merge RUNDIR's final adapter into its base model; returns RUNDIR/merged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MergeError(f"{run_dir}: not a directory")
    config = merge_config(run_dir, nf4_roundtrip)
    _check_adapter(run_dir)
    merged = run_dir / "merged"
    if merged.exists():
        print(f"replacing the previous merge in {merged}")
        shutil.rmtree(merged)
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": os.environ.get("AXOLOTL_DO_NOT_TRACK", "1")}
    with tempfile.TemporaryDirectory(prefix="merge-") as tmp:
        config_path = Path(tmp) / "merge.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        # A separate process: axolotl keeps global state (plugins, log tee) per process.
        result = subprocess.run(
            [sys.executable, "-m", "axolotl.cli.merge_lora", str(config_path)], env=env, check=False
        )
    if result.returncode != 0:
        raise MergeError(f"axolotl merge-lora failed (exit {result.returncode}); see above")
    if not any(merged.glob("*.safetensors")):
        raise MergeError(f"{merged}: axolotl wrote no weights")
    _install_run_tokenizer(run_dir, merged)
    return merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN", type=Path, help="run directory (runs/<recipe>-<timestamp>)"
    )
    parser.add_argument(
        "--no-nf4-roundtrip",
        dest="nf4_roundtrip",
        action="store_false",
        help="QLoRA runs: merge onto the original bf16 weights, not NF4-rounded",
    )


def run(args: argparse.Namespace) -> int:
    try:
        merged = merge(args.run_dir, args.nf4_roundtrip)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"merged model (loads with transformers alone): {merged}")
    return 0
