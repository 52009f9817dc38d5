"""Data-quality findings on kept rows (as they came in), and the one repair: dropping relation
lines with a ``None`` argument from the targets, each drop recorded."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from preprocessing.checks import (
    control_characters,
    describe_controls,
    estimated_tokens,
    longest_sequence_len,
)
from preprocessing.task import parse_items, parse_relation

if TYPE_CHECKING:
    from preprocessing.prepare import Row

FINDING_KINDS: tuple[str, ...] = (
    "empty_target",
    "none_relation",
    "repeated_item",
    "case_variants",
    "malformed_relation",
    "control_characters",
    "long_row",
)


def _none_sides(pair: tuple[str, str]) -> str:
    sides = [
        side for side, value in zip(("chemical", "disease"), pair, strict=True) if value == "None"
    ]
    return " and ".join(sides)


def find_issues(row: Row) -> list[dict[str, Any]]:
    """Quality findings in one kept row's target, as it came in."""
    found = []

    def add(kind: str, detail: str) -> None:
        found.append({"line": row.line, "task": row.task, "kind": kind, "detail": detail})

    for name in ("prompt", "completion"):
        controls = control_characters(getattr(row, name))
        if controls:
            add("control_characters", describe_controls(name, controls))
    longest, recipe = longest_sequence_len()
    tokens = estimated_tokens(row.prompt, row.completion)
    if tokens > longest:
        add(
            "long_row",
            f"~{tokens:,} tokens (UTF-8 bytes / 4) > sequence_len {longest:,} of {recipe}, "
            "the longest of any recipe: every recipe would drop it",
        )
    items = parse_items(row.completion)
    if not items:
        add("empty_target", repr(row.completion[:200]))
    for item, count in Counter(items).items():
        if count > 1:
            add("repeated_item", f"{item!r} x{count}")
    variants: dict[str, list[str]] = defaultdict(list)
    for item in dict.fromkeys(items):
        variants[item.casefold()].append(item)
    for group in variants.values():
        if len(group) > 1:
            add("case_variants", " / ".join(group))
    if row.task == "relation":
        for item in items:
            pair = parse_relation(item)
            if pair is None:
                add("malformed_relation", item)
            elif "None" in pair:
                add("none_relation", f"{item} ({_none_sides(pair)} is None)")
    return found


def drop_none_relations(row: Row) -> None:
    """Remove relation lines with a None argument from the target, recording each drop."""
    if row.task != "relation":
        return
    kept = []
    for text in row.completion.split("\n"):
        items = parse_items(text)
        pair = parse_relation(items[0]) if items else None
        if pair is not None and "None" in pair:
            reason = f"{_none_sides(pair)} is None (no mention carries that MeSH id first)"
            row.repairs.append(
                {"line": row.line, "task": row.task, "dropped": text, "reason": reason}
            )
        else:
            kept.append(text)
    row.completion = "\n".join(kept)
