"""The data a run trains on: prepared first when missing or stale, and for a resumed run exactly
the data it started with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preprocessing.files import repo_relative, sha256_file
from training.console import say
from training.errors import TrainError


def ensure_processed(data: Path, processed: Path) -> dict[str, Any]:
    """Run `prepare` when ``processed`` is missing or stale; returns its manifest."""
    from preprocessing.prepare import HOW_TO_GET_DATA, is_stale, prepare

    files = [processed / name for name in ("train.jsonl", "validation.jsonl", "manifest.json")]
    if not data.is_file():
        if all(f.is_file() for f in files):
            say(f"{data} not found; training on the processed data already in {processed}")
            return json.loads((processed / "manifest.json").read_text("utf-8"))
        raise TrainError(f"{data}: input data not found. {HOW_TO_GET_DATA}")
    if is_stale(data, processed):
        rel_data, rel_processed = repo_relative(data), repo_relative(processed)
        say(f"preparing {rel_data} -> {rel_processed} (missing or built from other data)")
        return prepare(data, processed)
    say(f"processed data up to date: {repo_relative(processed)}")
    return json.loads((processed / "manifest.json").read_text("utf-8"))


def ensure_same_data(processed: Path, sha256: str, data: Path, run_dir: Path) -> None:
    """A resumed run trains on exactly the data it started with: its processed dir as it was,
    rebuilt from ``data`` only if that is the very file the run was prepared from."""
    from preprocessing.prepare import prepare

    manifest_path = processed / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text("utf-8"))
        if manifest.get("input", {}).get("sha256") == sha256:
            return
    if data.is_file() and sha256_file(data) == sha256:
        say(f"rebuilding {processed} from {data} (the data {run_dir.name} was trained on)")
        prepare(data, processed)
        return
    raise TrainError(
        f"{processed} no longer holds the data {run_dir} was trained on, and {data} is not that "
        "data either: resume needs the same data (or start a new run)"
    )
