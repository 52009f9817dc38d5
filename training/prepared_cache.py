"""Axolotl's tokenised datasets, kept across runs: `dataset_prepared_path` points at
`<processed>-tokenised/<key>/` (beside the processed dir, which `prepare` owns and refuses to
rebuild while it holds files it did not write), so a second run on the same data loads the dataset
Axolotl saved instead of tokenising again (27.6 s of an H200 run's start, ~18 s of ~32 s on CPU;
bench/results/NOTES.md).

Axolotl names what it saves by a hash of dataset paths, the tokenizer's *name* and a list of
config keys, never file contents: the same path with other rows, or a rebuilt tokenizer in the
same directory, would load stale tokens. Our key adds what it misses: the bytes of every dataset
file and of the tokenizer's files, the library versions that tokenise, and the whole resolved
config except keys that only steer optimisation, evaluation, checkpoints or logging. Any change
that could alter a token therefore lands in a new directory; Axolotl's own hash still splits
train and validation inside it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, sha256_file
from training.hardware import package_versions

CACHE_SUFFIX = "-tokenised"  # <processed>-tokenised: derived from that data, never committed
KEEP = 4  # entries kept (most recently used): ~20 MB each for the BC5CDR splits (Llama-3)
LIBRARIES = ("axolotl", "datasets", "tokenizers", "transformers")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx")
TOKENIZER_PATTERNS = ["*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
# Keys that cannot change what Axolotl tokenises or saves (how the model is trained on it, the
# run's outputs). Every other key, known or not, is part of the key.
NOT_DATA_KEYS = frozenset(
    {
        "output_dir", "dataset_prepared_path", "resume_from_checkpoint",
        "hub_model_id", "hub_strategy", "hub_revision",
        "wandb_project", "wandb_entity", "wandb_name", "wandb_mode", "wandb_log_model",
        "use_tensorboard", "logging_steps", "include_tkps",
        "max_steps", "num_epochs", "learning_rate", "lr_scheduler", "warmup_ratio",
        "warmup_steps", "weight_decay", "optimizer",
        "lora_r", "lora_alpha", "lora_dropout",
        "gradient_checkpointing", "gradient_checkpointing_kwargs",
        "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit",
        "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
        "eval_f1", "eval_f1_rows", "eval_f1_max_new_tokens",
    }
)  # fmt: skip


def _hub_tokenizer_dir(repo_id: str, revision: str | None) -> Path | None:
    """The tokenizer files of a Hub model, from the local cache or else downloaded (they are
    small, and Axolotl fetches them anyway); None when they cannot be had."""
    from huggingface_hub import snapshot_download

    from training.hub import hub_token

    for local_only in (True, False):
        try:
            return Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=TOKENIZER_PATTERNS,
                    token=hub_token(), local_files_only=local_only,
                )
            )  # fmt: skip
        except Exception:  # not cached / offline / gated: try the next way, or give up
            continue
    return None


def tokenizer_files(config: dict[str, Any]) -> dict[str, str] | None:
    """sha256 of each file (weights aside) of the directory the tokenizer loads from; None when
    that directory cannot be found (then no key: the run tokenises into its own directory)."""
    source = str(config.get("tokenizer_config") or config.get("base_model") or "")
    if not source:
        return None
    local = Path(source) if Path(source).is_absolute() else REPO / source
    if local.is_dir():
        directory: Path | None = local
    elif config.get("trust_remote_code"):
        return None  # the tokenizer may be code from the Hub: nothing we can fingerprint
    else:
        directory = _hub_tokenizer_dir(source, config.get("revision_of_model"))
    if directory is None:
        return None
    return {
        path.name: sha256_file(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES)
    }


def dataset_files(config: dict[str, Any]) -> dict[str, str] | None:
    """sha256 of every dataset file the config names; None if one is not a local file."""
    hashes = {}
    for key in ("datasets", "test_datasets"):
        for dataset in config.get(key) or []:
            path = Path(dataset["path"])
            path = path if path.is_absolute() else REPO / path
            if not path.is_file():
                return None
            hashes[str(dataset["path"])] = sha256_file(path)
    return hashes


def prepared_key(config: dict[str, Any]) -> str | None:
    """What identifies the tokenised data of ``config`` (hex); None when its data or tokenizer
    is not local files we can fingerprint."""
    data = dataset_files(config)
    tokenizer = tokenizer_files(config) if data is not None else None
    if data is None or tokenizer is None:
        return None
    settings = {key: value for key, value in config.items() if key not in NOT_DATA_KEYS}
    payload = {
        "config": settings,
        "data": data,
        "tokenizer": tokenizer,
        "libraries": package_versions(LIBRARIES),
    }
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _remove_unfinished(entry: Path) -> None:
    """A save that was killed leaves a dataset directory without dataset_info.json (`datasets`
    writes it last), which Axolotl would try to load as if complete: remove it, unless a run
    holds Axolotl's lock on the entry (it may be saving right now)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(entry / "datasets_prep.lock"))
    try:
        with lock.acquire(timeout=0):
            for saved in entry.iterdir():
                if saved.is_dir() and not (saved / "dataset_info.json").is_file():
                    shutil.rmtree(saved, ignore_errors=True)
    except Timeout:
        return


def _prune(root: Path, keep: Path) -> None:
    """Only the KEEP most recently used entries stay (``keep`` is one of them)."""
    entries = sorted(
        (p for p in root.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def shared_prepared_dir(config: dict[str, Any], processed: Path) -> Path | None:
    """``processed``-tokenised/<key> for ``config`` (created, marked as just used, unfinished
    saves removed, old entries pruned), or None when no trustworthy key exists."""
    key = prepared_key(config)
    if key is None:
        return None
    root = processed.parent / f"{processed.name}{CACHE_SUFFIX}"
    entry = root / key
    entry.mkdir(parents=True, exist_ok=True)
    entry.touch()  # mtime = last use, for _prune
    _remove_unfinished(entry)
    _prune(root, entry)
    return entry
