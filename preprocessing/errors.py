"""What `prepare` stops with: one exception family, one line each, with the exit status the CLI
returns (2 = a path or usage problem, 1 = the data itself is bad)."""

from __future__ import annotations

from typing import Any

EXIT_BAD_DATA, EXIT_USAGE = 1, 2


class PrepareError(Exception):
    """A problem the user can fix; ``str()`` is the message to print, naming the file."""

    exit_code = EXIT_BAD_DATA


class MissingInputError(PrepareError, FileNotFoundError):
    """The input file does not exist; the message says how to obtain or build it."""

    exit_code = EXIT_USAGE


class InputPathError(PrepareError):
    """The input is a directory, unreadable, or not a text file we can read."""

    exit_code = EXIT_USAGE


class OutputPathError(PrepareError):
    """--out is a file, lies under a file, is not writable, or holds files not ours."""

    exit_code = EXIT_USAGE


class EncodingError(PrepareError):
    """The whole file is in another encoding (UTF-16, UTF-32) or compressed, not UTF-8 JSONL."""


class TooLittleDataError(PrepareError):
    """Too few abstracts survived validation to give every split at least one."""


class RejectedRowsError(PrepareError, ValueError):
    """Some lines were rejected and ``allow_rejects`` was off; the message names the lines."""

    def __init__(self, message: str, manifest: dict[str, Any]) -> None:
        super().__init__(message)
        self.manifest = manifest
