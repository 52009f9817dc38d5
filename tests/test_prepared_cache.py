"""Tokenised datasets shared across runs (training/prepared_cache.py): a second run on the same
data, tokenizer and data settings loads what Axolotl saved (the same rows, token for token); any
change that could alter a token gets a new directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

TINY_RECIPE = REPO / "recipes" / "tiny-cpu.yml"

# Axolotl's data loading in a child process (its dataset workers are spawned), twice: with the
# run's config as it is (the shared directory) and into an empty directory (a fresh tokenisation).
COMPARE = """
import json, sys, tempfile
from axolotl.cli.config import load_cfg
from axolotl.common.datasets import load_datasets

def rows(**override):
    meta = load_datasets(cfg=load_cfg(sys.argv[1], **override))
    return {"train": meta.train_dataset.to_dict(), "eval": meta.eval_dataset.to_dict()}

if __name__ == "__main__":
    shared = rows()
    fresh = rows(dataset_prepared_path=tempfile.mkdtemp())
    print("RESULT " + json.dumps({
        "equal": shared == fresh,
        "columns": sorted(shared["train"]),
        "rows": {split: len(data["input_ids"]) for split, data in shared.items()},
    }))
"""


def test_a_second_run_loads_the_tokenised_rows_the_first_saved(tiny_run, tmp_path):
    config = yaml.safe_load((tiny_run / "config.yml").read_text("utf-8"))
    shared = Path(config["dataset_prepared_path"])
    assert shared.parent.name.endswith("-tokenised") and tiny_run not in shared.parents
    saved = [p for p in shared.iterdir() if (p / "dataset_info.json").is_file()]
    assert len(saved) == 2  # train and validation, saved by the tiny run's Axolotl process
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", COMPARE, str(tiny_run / "config.yml")], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count(f"Loading prepared dataset from disk at {shared}") == 2
    report = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert {"input_ids", "labels"} <= set(report["columns"])
    assert report["rows"]["train"] > 0 and report["rows"]["eval"] > 0
    assert report["equal"], "the shared rows differ from a fresh tokenisation"


@pytest.fixture
def copies(tiny_model, processed_sample, tmp_path) -> tuple[Path, Path]:
    """A processed dir and a tiny model dir of our own, to change."""
    processed = tmp_path / "processed"
    shutil.copytree(processed_sample, processed)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    return processed, model


def resolved(processed: Path, model: Path, *overrides: str, run: str = "run") -> dict:
    from training.config import resolve_config

    recipe = yaml.safe_load(TINY_RECIPE.read_text("utf-8"))
    return resolve_config(
        recipe, processed.parent / run, processed, 1, None, None, str(model), list(overrides)
    )


def test_the_key_ignores_training_settings_and_follows_the_data_settings(copies, tmp_path):
    from preprocessing.paths import check_output

    processed, model = copies
    first = resolved(processed, model)["dataset_prepared_path"]
    assert Path(first).parent == tmp_path / "processed-tokenised"
    check_output(processed)  # `prepare` can still rebuild the processed dir in place
    same = [
        resolved(processed, model, run="other-run"),
        resolved(processed, model, "learning_rate=0.1", "max_steps=3", "lora_r=4"),
    ]
    assert {config["dataset_prepared_path"] for config in same} == {first}
    for override in ("sequence_len=256", "chat_template=chatml", "train_on_inputs=true"):
        assert resolved(processed, model, override)["dataset_prepared_path"] != first, override
    explicit = resolved(processed, model, "dataset_prepared_path=elsewhere")
    assert explicit["dataset_prepared_path"] == "elsewhere"


def test_changed_data_or_tokenizer_bytes_give_a_new_key(copies):
    processed, model = copies
    first = resolved(processed, model)["dataset_prepared_path"]
    validation = processed / "validation.jsonl"
    lines = validation.read_text("utf-8").splitlines(keepends=True)
    validation.write_text("".join(lines[:-1]), "utf-8")  # the same path, one row fewer
    fewer_rows = resolved(processed, model)["dataset_prepared_path"]
    assert fewer_rows != first
    tokenizer_config = model / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text("utf-8"))
    settings["add_bos_token"] = not settings.get("add_bos_token", False)
    tokenizer_config.write_text(json.dumps(settings), "utf-8")
    assert resolved(processed, model)["dataset_prepared_path"] not in (first, fewer_rows)


def test_without_local_data_the_run_tokenises_into_its_own_dir(copies):
    processed, model = copies
    (processed / "train.jsonl").unlink()
    config = resolved(processed, model)
    assert Path(config["dataset_prepared_path"]) == processed.parent / "run" / "_prepared"


def test_unfinished_saves_are_removed_and_old_entries_pruned(copies):
    from training import prepared_cache

    processed, model = copies
    entry = Path(resolved(processed, model)["dataset_prepared_path"])
    (entry / "complete").mkdir()
    (entry / "complete" / "dataset_info.json").write_text("{}")
    (entry / "killed").mkdir()
    (entry / "killed" / "data-00000-of-00001.arrow").write_bytes(b"half")
    assert Path(resolved(processed, model)["dataset_prepared_path"]) == entry  # the next run
    assert (entry / "complete").is_dir() and not (entry / "killed").exists()
    for length in (100, 200, 300, 400):  # four other entries, each used once, oldest first
        resolved(processed, model, f"sequence_len={length}")
    entries = sorted(p.name for p in (processed.parent / "processed-tokenised").iterdir())
    assert len(entries) == prepared_cache.KEEP and entry.name not in entries  # least recent
    resolved(processed, model, "sequence_len=100")  # used again: kept, the now oldest goes
    assert len(list((processed.parent / "processed-tokenised").iterdir())) == prepared_cache.KEEP
    assert Path(resolved(processed, model, "sequence_len=100")["dataset_prepared_path"]).is_dir()
