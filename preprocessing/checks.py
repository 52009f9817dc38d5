"""Whole-file and per-text checks of `prepare` that the JSON validation does not make.

- What the file is: UTF-16/UTF-32 (with or without a BOM) or gzip is named as such, with the
  command that converts it, instead of being rejected line by line as "not UTF-8".
- Control characters inside the decoded strings (JSON's \\u0000 escapes pass json.loads): NUL
  rejects the row (no real text holds one, and it truncates C strings in tokenizers); the rest
  are findings.
- Rows too long for every recipe: a finding, from a length estimate (no tokenizer here; the
  training launcher counts exactly with the recipe's tokenizer).
"""

from __future__ import annotations

import re
from functools import lru_cache

from preprocessing.files import REPO, FileFormatError, load_yaml

RECIPES = REPO / "recipes"  # preprocessing comes before training: its own path to them
DEFAULT_LONGEST_SEQUENCE_LEN = 8192  # when no recipes/ is at hand (an installed package)
# English BPE tokenizers average about 4 UTF-8 bytes per token; biomedical text a bit less, so the
# estimate errs low: a row flagged as too long is too long.
BYTES_PER_TOKEN = 4
# Unicode's control characters (category Cc: C0, DEL, C1) except tab, newline, carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16 LE", "UTF-16LE"),
    (b"\xfe\xff", "UTF-16 BE", "UTF-16BE"),
)


def sniff_encoding(data: bytes) -> tuple[str, str] | None:
    """(what the file is, how to convert it) if it is evidently not UTF-8 text, else None."""
    if data.startswith(b"\x1f\x8b"):
        return "gzip-compressed", "gunzip it first"
    for bom, name, iconv in _BOMS:
        if data.startswith(bom):
            return f"{name} text (with a byte-order mark)", f"iconv -f {iconv} -t UTF-8"
    # Without a BOM: JSON text never holds a raw NUL byte, but ASCII in UTF-16 is every 2nd byte.
    sample = data[:4096]
    if len(sample) < 4 or sample.count(0) < len(sample) // 4:
        return None
    candidates = (
        ("UTF-32LE", 4, 0),  # (encoding, code unit width, the one lane that holds the ASCII)
        ("UTF-32BE", 4, 3),
        ("UTF-16LE", 2, 0),
        ("UTF-16BE", 2, 1),
    )
    for iconv, width, text_lane in candidates:
        shares = [_nul_share(sample[i::width]) for i in range(width)]
        others = [share for i, share in enumerate(shares) if i != text_lane]
        if shares[text_lane] < 0.5 and min(others) > 0.9:
            name = f"{iconv[:-2]} {iconv[-2:]}"
            return f"{name} text (no byte-order mark)", f"iconv -f {iconv} -t UTF-8"
    return "binary data with NUL bytes", "check that it is the instruction JSONL"


def _nul_share(lane: bytes) -> float:
    return lane.count(0) / len(lane) if lane else 0.0


def control_characters(text: str) -> list[tuple[int, str]]:
    """(0-based position, U+XXXX) of each control character other than tab and newlines."""
    return [(m.start(), f"U+{ord(m.group()):04X}") for m in _CONTROL.finditer(text)]


def describe_controls(field: str, found: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"{code} at {pos}" for pos, code in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"{field}: {shown}{more}"


def estimated_tokens(*texts: str) -> int:
    return sum(len(text.encode("utf-8")) for text in texts) // BYTES_PER_TOKEN


@lru_cache(maxsize=1)
def longest_sequence_len() -> tuple[int, str]:
    """(the largest ``sequence_len`` of any recipe, which recipe): a longer row fits none."""
    best = (0, "")
    for path in sorted(RECIPES.glob("*.yml")):
        try:
            config = load_yaml(path)
        except FileFormatError:  # a broken recipe is the launcher's to report, not this check's
            continue
        value = config.get("sequence_len")
        if isinstance(value, int) and value > best[0]:
            best = (value, path.stem)
    return best if best[0] else (DEFAULT_LONGEST_SEQUENCE_LEN, "default")
