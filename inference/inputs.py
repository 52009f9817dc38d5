"""Abstracts to extract from, read from any of the inputs `python -m inference extract` takes.

- JSONL, one abstract a line: {"id", "text"} or {"id", "title", "abstract"}. Prompts use the
  abstract only (the title is ignored), as the training rows do; "text" is taken as the
  abstract. A line without "id" gets its line number as id.
- A folder of .txt files, one abstract each: id = the file name without .txt.
- PubTator (lines `PMID|t|title`, `PMID|a|abstract`, annotation rows): id = the PMID, text = the
  `|a|` line; annotations are ignored.
- One plain-text abstract (a file, or '-' for stdin): id = the file name without its suffix
  ("stdin" for stdin).

The format of a file (or stdin) is read from its first non-blank line: "{" starts JSONL, a
`digits|t|` or `digits|a|` prefix PubTator, anything else is one plain-text abstract. Every
problem is a FileFormatError of one line naming the file (and line): a line that is not JSON or
not an object, no non-empty text, an id that is not a string or integer, an id seen twice.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from preprocessing.files import FileFormatError

_PUBTATOR = re.compile(r"^\d+\|[ta]\|")


@dataclass(frozen=True)
class Abstract:
    id: str
    text: str
    where: str  # file:line (or the file) it came from, for messages


def read_abstracts(source: str) -> list[Abstract]:
    """The abstracts of `source` (a file, a folder of .txt files, or '-' for stdin), in order."""
    path = Path(source)
    if source != "-" and path.is_dir():
        abstracts = _read_folder(path)
    else:
        name = "<stdin>" if source == "-" else source
        content = _read_text(source, name)
        first = next((line for line in content.splitlines() if line.strip()), "")
        if not first:
            raise FileFormatError(f"{name}: no text")
        if first.lstrip().startswith("{"):
            abstracts = _read_jsonl(content, name)
        elif _PUBTATOR.match(first.lstrip("\ufeff")):
            abstracts = _read_pubtator(content, source, name)
        else:
            stem = "stdin" if source == "-" else path.stem
            abstracts = [Abstract(stem, content.strip(), name)]
    _check_unique(abstracts)
    return abstracts


def _read_text(source: str, name: str) -> str:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise FileFormatError(f"{name}: cannot read ({error.strerror or error})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FileFormatError(
            f"{name}:{line}: not UTF-8 (byte 0x{data[error.start]:02x})"
        ) from None


def _read_jsonl(content: str, name: str) -> list[Abstract]:
    abstracts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise FileFormatError(f"{where}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise FileFormatError(f"{where}: JSON nested too deeply to read") from None
        if not isinstance(row, dict):
            raise FileFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
        text = row.get("text", row.get("abstract"))
        if not isinstance(text, str) or not text.strip():
            raise FileFormatError(f'{where}: expected a non-empty "text" or "abstract" string')
        identifier = row.get("id", number)
        if isinstance(identifier, bool) or not isinstance(identifier, str | int):
            raise FileFormatError(f'{where}: "id" must be a string or an integer')
        abstracts.append(Abstract(str(identifier), text.strip(), where))
    return abstracts


def _read_pubtator(content: str, source: str, name: str) -> list[Abstract]:
    from preprocessing.bc5cdr import read_pubtator

    if source == "-":  # the PubTator reader takes a file: stdin goes through a temporary one
        with tempfile.NamedTemporaryFile("w", suffix=".PubTator.txt", encoding="utf-8") as temp:
            temp.write(content)
            temp.flush()
            documents = _pubtator_documents(Path(temp.name), read_pubtator)
    else:
        documents = _pubtator_documents(Path(source), read_pubtator)
    abstracts = []
    for document in documents:
        if not document.abstract.strip():
            raise FileFormatError(f"{name}: PMID {document.pmid} has no |a| (abstract) line")
        abstracts.append(Abstract(document.pmid, document.abstract.strip(), name))
    return abstracts


def _pubtator_documents(path: Path, read_pubtator) -> list:
    try:
        return read_pubtator(path)
    except ValueError as error:  # names file and line
        raise FileFormatError(str(error)) from None


def _read_folder(folder: Path) -> list[Abstract]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileFormatError(f"{folder}: no .txt files in this folder")
    abstracts = []
    for path in files:
        text = _read_text(str(path), str(path)).strip()
        if not text:
            raise FileFormatError(f"{path}: empty file")
        abstracts.append(Abstract(path.stem, text, str(path)))
    return abstracts


def _check_unique(abstracts: list[Abstract]) -> None:
    seen: dict[str, str] = {}
    for abstract in abstracts:
        if abstract.id in seen:
            raise FileFormatError(
                f"{abstract.where}: duplicate id {abstract.id!r} (first at {seen[abstract.id]})"
            )
        seen[abstract.id] = abstract.where
