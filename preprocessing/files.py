"""The one home of the small file helpers every stage uses: the repo root, repo-relative paths,
timestamps, hashing, JSONL/YAML/JSON reading, and atomic writes (a file is either its old self or
complete, never half-written).

Errors a user can cause (a missing file, a bad line) are raised as `FileFormatError`, whose
message is one line naming the file and, where there is one, the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The checkout's root: recipes/, runs/, data/ are found relative to it.
REPO = Path(__file__).resolve().parents[1]


class FileFormatError(ValueError):
    """A file that cannot be read as what it should be; the message is one line."""


def now() -> str:
    """UTC now as ISO 8601 to the second: the timestamp every record uses."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def repo_relative(path: str | Path) -> str:
    """Repo-relative where possible, so records stay valid when the checkout moves."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.as_posix()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) of a JSONL file; blank lines are skipped, other non-JSON is an error.

    Lines are decoded one by one so that a non-UTF-8 line is reported with its number; JSON
    nested too deeply for the parser is an error of its line, not a crash.
    """
    rows = []
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise FileFormatError(f"{path}: {error.strerror or type(error).__name__}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                raise FileFormatError(
                    f"{path}:{number}: not UTF-8 (byte 0x{byte:02x} at byte {error.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise FileFormatError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            except RecursionError:
                raise FileFormatError(f"{path}:{number}: JSON nested too deeply to read") from None
    return rows


def read_json(path: str | Path) -> Any | None:
    """A JSON file's value, or None when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def load_yaml(path: str | Path, what: str = "a mapping") -> dict[str, Any]:
    """A YAML file that must hold a mapping; FileFormatError (one line) otherwise."""
    import yaml

    try:
        value = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as error:
        raise FileFormatError(f"{path}: {error.strerror or type(error).__name__}") from None
    except yaml.YAMLError as error:
        raise FileFormatError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(value, dict):
        raise FileFormatError(f"{path}: expected {what}")
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file next to `path`, then os.replace it into place.

    Raises IsADirectoryError when `path` is a directory (a clear OSError for the CLI to report).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would surprise readers
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """atomic_write_bytes for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """Indented JSON (UTF-8, non-ASCII kept), written atomically, ending in a newline."""
    return atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """One JSON value per line, written atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
