"""The input file and the output directory of `prepare`: read one, publish the other atomically.

An output directory is always one run's complete output: everything is written into a staging
directory beside it, which then takes its place (the previous one is removed only after that).
A directory is replaced only if it is empty or holds nothing but files `prepare` writes, so a
mistyped --out can never wipe someone's directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from preprocessing.errors import InputPathError, MissingInputError, OutputPathError

# Every name `prepare` may leave in its output directory.
OUR_FILES = frozenset(
    {
        "train.jsonl",
        "validation.jsonl",
        "test.jsonl",
        "rejects.jsonl",
        "repairs.jsonl",
        "findings.jsonl",
        "manifest.json",
        "report.md",
    }
)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def read_input(path: Path, how_to_get_data: str) -> bytes:
    """The input's bytes, or a one-line error saying what the path is instead."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.jsonl"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise InputPathError(
            f"{path}: is a directory, not a file: pass the instruction JSONL itself{hint}"
        )
    if not path.exists():
        raise MissingInputError(f"{path}: input file not found. {how_to_get_data}")
    if not path.is_file():
        raise InputPathError(f"{path}: not a regular file (a device, socket or pipe?)")
    try:
        return path.read_bytes()
    except PermissionError:
        raise InputPathError(
            f"{path}: cannot read it (permission denied): make it readable (chmod a+r) or copy it"
        ) from None
    except OSError as err:
        raise InputPathError(f"{path}: cannot read it ({_reason(err)})") from None


def _file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is not a directory."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output(out_dir: Path) -> None:
    """Stop before any work if ``out_dir`` cannot become `prepare`'s output directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir}: --out is an existing file; give a directory")
    blocker = _file_ancestor(out_dir)
    if blocker is not None:
        raise OutputPathError(f"{out_dir}: cannot create it: {blocker} is a file, not a directory")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUR_FILES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise OutputPathError(
                f"{out_dir}: holds files prepare did not write ({shown}); it would replace the "
                "whole directory: give a new or empty one"
            )
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    parent = out_dir.parent if out_dir.parent.exists() else existing
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{out_dir}: cannot write in {parent} (permission denied)")


def staging_dir(out_dir: Path) -> Path:
    """A new empty directory beside ``out_dir`` (same file system, so the swap is a rename)."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the data from other users of the box
    except OSError as err:
        raise OutputPathError(f"{out_dir}: cannot write there ({_reason(err)})") from None
    return staging


def publish(staging: Path, out_dir: Path) -> None:
    """Put ``staging`` in ``out_dir``'s place; the previous directory goes only afterwards."""
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        if out_dir.exists():
            out_dir.rename(old)
        try:
            staging.rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)  # leave things as they were
            raise
    except OSError as err:
        raise OutputPathError(f"{out_dir}: cannot replace it ({_reason(err)})") from None
    shutil.rmtree(old, ignore_errors=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
