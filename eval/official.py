"""The BioCreative V CDR measures, twice: the official kit's jar, and a Python twin of it.

The twin follows what `ncbi.bc5cdr_eval.Evaluate` (BC5CDR_Evaluation-0.0.3) does with PubTator
files, read from its bytecode, so that both give the same TP/FP/FN on any file:
- every line is trimmed (Java's trim: characters <= U+0020 at both ends); blank lines and lines
  containing '|t|', '|T|', '|a|' or '|A|' anywhere are skipped; the rest is split on tabs, with
  trailing empty fields dropped (Java's String.split);
- a row whose 2nd and 3rd fields are digits is a mention: `mention` keys are (document, start,
  end, type); `id` keys are (document, type, id) for each `|`-separated id of the 6th field,
  ids '' and '-1' skipped and 'MESH:' put in front of ids without a ':';
- any other row is a relation: `relation` keys are (document, 2nd field, id 3, id 4), the ids
  finalised the same way (an id that is '-1' becomes 'null', as Java prints it);
- only rows whose type (5th field for mentions, 2nd for relations) is the one asked for count;
- keys are sets (duplicates collapse; id-level is a set per document and type);
- predicted keys of documents that have no gold key of that measure are dropped before
  counting — e.g. CID pairs predicted for an abstract whose gold has no CID cost nothing;
- TP = gold keys predicted, FN = gold keys not predicted, FP = predicted keys not in gold.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eval.score import prf

# (evaluation type, concept type) of the five measures, in report order.
MEASURES: tuple[tuple[str, str], ...] = (
    ("relation", "CID"),
    ("id", "Chemical"),
    ("id", "Disease"),
    ("mention", "Chemical"),
    ("mention", "Disease"),
)
JAR_NAME = "bc5cdr_eval.jar"
JAR_CLASS = "ncbi.bc5cdr_eval.Evaluate"
_DIGITS = re.compile(r"[0-9]+")
_JAVA_BLANKS = "".join(map(chr, range(0x21)))  # what java.lang.String.trim() strips
_HEADER_MARKS = ("|t|", "|T|", "|a|", "|A|")


class OfficialError(RuntimeError):
    """The official kit could not be found, unpacked or run; the message says why."""


def measure_name(evaluation: str, concept: str) -> str:
    return f"{evaluation} {concept}"


def _java_split(line: str) -> list[str]:
    fields = line.split("\t")
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return fields


def _finalize_id(concept_id: str) -> str | None:
    if not concept_id or concept_id == "-1":
        return None
    return concept_id if ":" in concept_id else "MESH:" + concept_id


def _keys_of_line(fields: list[str], evaluation: str, concept: str) -> Iterator[tuple]:
    if _DIGITS.fullmatch(fields[1]) and _DIGITS.fullmatch(fields[2]):
        document, start, end, kind = fields[0], int(fields[1]), int(fields[2]), fields[4]
        if kind != concept:
            return
        if evaluation == "mention":
            yield (document, start, end, kind)
        elif evaluation == "id" and len(fields) >= 6:
            for concept_id in fields[5].strip(_JAVA_BLANKS).split("|"):
                final = _finalize_id(concept_id)
                if final is not None:
                    yield (document, kind, final)
    elif evaluation == "relation" and fields[1] == concept:
        first, second = (_finalize_id(fields[i]) or "null" for i in (2, 3))
        yield (fields[0], fields[1], first, second)


def load_keys(path: str | Path, evaluation: str, concept: str) -> set[tuple]:
    """The set of keys that the jar reads from one PubTator file for one measure."""
    keys: set[tuple] = set()
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip("\r\n").strip(_JAVA_BLANKS)
            if not line or any(mark in line for mark in _HEADER_MARKS):
                continue
            try:
                keys.update(_keys_of_line(_java_split(line), evaluation, concept))
            except (IndexError, ValueError):
                # The jar stops on such a line too ("Error on line=...").
                raise OfficialError(f"{path}:{number}: not a PubTator row: {line[:80]!r}") from None
    return keys


def count(gold: set[tuple], predicted: set[tuple]) -> tuple[int, int, int]:
    """(TP, FP, FN) with the jar's rule: predictions on documents without gold keys are dropped."""
    documents = {key[0] for key in gold}
    predicted = {key for key in predicted if key[0] in documents}
    tp = len(gold & predicted)
    return tp, len(predicted) - tp, len(gold) - tp


def python_scores(gold: Path, predicted: Path) -> dict[str, dict]:
    """The five measures by the Python twin: {name: {tp, fp, fn, precision, recall, f1}}."""
    scores = {}
    for evaluation, concept in MEASURES:
        counts = count(
            load_keys(gold, evaluation, concept), load_keys(predicted, evaluation, concept)
        )
        scores[measure_name(evaluation, concept)] = prf(*counts)
    return scores


# ---- the jar ----------------------------------------------------------------------------------


def java_available() -> bool:
    return shutil.which("java") is not None


def unpack_kit(kit: Path, into: Path) -> Path:
    """The jar's path, unpacked from the kit's zip into `into`/<sha256 of the zip>/ (reused when
    already there; written atomically, so an interrupted unpack never leaves a broken jar)."""
    from preprocessing.files import atomic_write_bytes

    if not kit.is_file():
        raise OfficialError(f"{kit}: the official kit (BC5CDR_Evaluation-0.0.3.zip) is not there")
    jar = into / hashlib.sha256(kit.read_bytes()).hexdigest()[:16] / JAR_NAME
    if jar.is_file():
        return jar
    try:
        with zipfile.ZipFile(kit) as archive:
            members = [n for n in archive.namelist() if n == JAR_NAME or n.endswith("/" + JAR_NAME)]
            if not members:
                raise OfficialError(f"{kit}: no {JAR_NAME} inside")
            return atomic_write_bytes(jar, archive.read(members[0]))
    except zipfile.BadZipFile as error:
        raise OfficialError(f"{kit}: not a zip file ({error})") from None


def _parse_jar_output(text: str, what: str) -> tuple[int, int, int]:
    found = dict(re.findall(r"^(TP|FP|FN): (\d+)$", text, re.MULTILINE))
    if set(found) != {"TP", "FP", "FN"}:
        raise OfficialError(f"the jar printed no TP/FP/FN for {what}: {text.strip()[-300:]!r}")
    return int(found["TP"]), int(found["FP"]), int(found["FN"])


def _run_jar(jar: Path, evaluation: str, concept: str, gold: Path, predicted: Path) -> tuple:
    # The serial collector: the jar is short-lived and single-threaded, and parallel GC threads
    # only compete for the cores the other runs need.
    command = ["java", "-XX:+UseSerialGC", "-cp", str(jar), JAR_CLASS, evaluation, concept]
    result = subprocess.run(
        [*command, "PubTator", str(gold), str(predicted)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    what = f"{measure_name(evaluation, concept)} of {predicted}"
    if result.returncode != 0:
        raise OfficialError(f"the jar failed on {what}: {result.stderr.strip()[-300:]!r}")
    return _parse_jar_output(result.stdout, what)


def jar_scores(
    kit: Path, gold: Path, predicted: list[Path], cache: Path | None = None
) -> list[dict[str, dict]]:
    """The five measures by the official jar for each predicted file (one run per measure and
    file, as many at a time as there are cores), the kit unpacked into `cache` or a temp
    directory. Raises OfficialError when Java or the kit is missing or the jar fails."""
    if not java_available():
        raise OfficialError("java not found on PATH")
    with tempfile.TemporaryDirectory() as scratch:
        jar = unpack_kit(kit, cache or Path(scratch))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            futures = [
                {
                    measure_name(e, c): pool.submit(_run_jar, jar, e, c, gold, path)
                    for e, c in MEASURES
                }
                for path in predicted
            ]
            return [
                {name: prf(*future.result()) for name, future in jobs.items()} for jobs in futures
            ]
