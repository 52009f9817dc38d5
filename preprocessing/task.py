"""The task definition: one place for prompt wording, output formats and parsing.

Preprocessing builds and validates rows with it, eval parses model output with it, tests
import it. Nothing else in the repo re-states a prompt string or a bullet rule.

Three tasks share one abstract each:
  chemical  "List of extracted chemicals:"   -> "- name\\n- name"
  disease   "List of extracted diseases:"    -> "- name\\n- name"
  relation  "List of extracted influences:"  -> "- Chemical X influences disease Y" per line
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

TASKS: tuple[str, ...] = ("chemical", "disease", "relation")

PROMPT_PREFIX = (
    "The following article contains technical terms including diseases, drugs and chemicals. "
    "Create a list only of the "
)
# What each task asks for (in the instruction) and what the answer list is called (in the cue).
_ASKED_FOR = {
    "chemical": "chemicals",
    "disease": "diseases",
    "relation": "influences between the chemicals and diseases",
}
_LIST_NAME = {"chemical": "chemicals", "disease": "diseases", "relation": "influences"}

DEFAULT_SYSTEM_PROMPT = (
    "You are a medical NER expert. Extract the requested entities from medical texts accurately."
)

RELATION_TEMPLATE = "Chemical {chemical} influences disease {disease}"


def instruction(task: str) -> str:
    """The text before the abstract: '... Create a list only of the chemicals mentioned.\\n\\n'."""
    return f"{PROMPT_PREFIX}{_ASKED_FOR[task]} mentioned.\n\n"


def answer_cue(task: str) -> str:
    """The text after the abstract, e.g. '\\n\\nList of extracted chemicals:\\n'."""
    return f"\n\nList of extracted {_LIST_NAME[task]}:\n"


def build_prompt(task: str, abstract: str) -> str:
    return instruction(task) + abstract + answer_cue(task)


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """Recognise a prompt: (task, abstract), or None if it is none of the three tasks."""
    for task in TASKS:
        head, tail = instruction(task), answer_cue(task)
        if (
            prompt.startswith(head)
            and prompt.endswith(tail)
            and len(prompt) >= len(head) + len(tail)
        ):
            return task, prompt[len(head) : len(prompt) - len(tail)]
    return None


def task_of(prompt: str) -> str | None:
    parsed = parse_prompt(prompt)
    return parsed[0] if parsed else None


# ---- completions: writing -------------------------------------------------------------------


def format_entities(names: Iterable[str]) -> str:
    """The published format: '- a\\n- b'; an empty list is written '- ' (as in the real file)."""
    return "- " + "\n- ".join(names)


def format_relation(chemical: str, disease: str) -> str:
    return RELATION_TEMPLATE.format(chemical=chemical, disease=disease)


def format_relations(pairs: Iterable[tuple[str, str]]) -> str:
    """One '- Chemical X influences disease Y' line per pair; no pairs is the empty string."""
    return "\n".join("- " + format_relation(c, d) for c, d in pairs)


# ---- completions: reading (training targets and model output alike) ------------------------

# One leading bullet: '-', '*', '•', or a number followed by '.' or ')', with whitespace around it.
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
# The template word for word (single spaces, as in RELATION_TEMPLATE); keywords case-insensitive;
# the chemical is the shortest match (lazy), the disease the rest.
_RELATION = re.compile(r"chemical (.+?) influences disease (.+)", re.IGNORECASE | re.DOTALL)


def parse_items(text: str) -> list[str]:
    """Lines of a list answer, one bullet marker removed, stripped; empty lines skipped."""
    items = []
    for line in text.splitlines():
        item = _BULLET.sub("", line, count=1).strip()
        if item:
            items.append(item)
    return items


def parse_relation(item: str, collapse_whitespace: bool = False) -> tuple[str, str] | None:
    """'Chemical X influences disease Y' -> ('X', 'Y'); anything else -> None (a format error).

    The template's single spaces are required unless `collapse_whitespace` (normalized scoring):
    then runs of whitespace count as one space ('Chemical  X  influences  disease  Y' parses).
    """
    if collapse_whitespace:
        item = " ".join(item.split())
    match = _RELATION.fullmatch(item.strip())
    if not match:
        return None
    return match.group(1).strip(), match.group(2).strip()


# ---- normalisation for lenient scoring ------------------------------------------------------

_DASHES = dict.fromkeys([*range(0x2010, 0x2016), 0x2212], "-")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, case-fold, dashes to '-', whitespace runs to one space, no trailing .,;:"""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DASHES)
    text = _SPACES.sub(" ", text).strip()
    return text.rstrip(".,;:").strip()
