"""The shared task definition: prompts round-trip, completions parse, names normalise."""

from __future__ import annotations

import pytest

from preprocessing.task import (
    DEFAULT_SYSTEM_PROMPT,
    TASKS,
    build_prompt,
    format_entities,
    format_relation,
    format_relations,
    normalize,
    parse_items,
    parse_prompt,
    parse_relation,
    task_of,
)

ABSTRACT = "Lithium raised TSH.\nHypothyroidism followed in 3 of 40 patients."

# The exact published wording, written out once here so a silent change to task.py is caught.
PUBLISHED_HEAD = (
    "The following article contains technical terms including diseases, drugs and chemicals. "
    "Create a list only of the {} mentioned.\n\n"
)


@pytest.mark.parametrize(
    "task, asked, cue",
    [
        ("chemical", "chemicals", "chemicals"),
        ("disease", "diseases", "diseases"),
        ("relation", "influences between the chemicals and diseases", "influences"),
    ],
)
def test_prompt_wording_and_round_trip(task: str, asked: str, cue: str) -> None:
    prompt = build_prompt(task, ABSTRACT)
    expected = PUBLISHED_HEAD.format(asked) + ABSTRACT + f"\n\nList of extracted {cue}:\n"
    assert prompt == expected
    assert parse_prompt(prompt) == (task, ABSTRACT)
    assert task_of(prompt) == task


def test_the_three_tasks_are_distinct() -> None:
    assert TASKS == ("chemical", "disease", "relation")
    prompts = {build_prompt(task, ABSTRACT) for task in TASKS}
    assert len(prompts) == 3


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "Summarise this abstract.",
        build_prompt("chemical", ABSTRACT).replace("chemicals mentioned", "drugs mentioned"),
        build_prompt("chemical", ABSTRACT)[:-1],  # cue without its final newline
        build_prompt("disease", ABSTRACT).replace("List of extracted diseases", "List of diseases"),
    ],
)
def test_unknown_prompts_are_not_recognised(prompt: str) -> None:
    assert parse_prompt(prompt) is None
    assert task_of(prompt) is None


def test_mixed_head_and_cue_is_not_recognised() -> None:
    chem, dis = build_prompt("chemical", ABSTRACT), build_prompt("disease", ABSTRACT)
    frankenstein = (
        chem[: chem.index(ABSTRACT)] + ABSTRACT + dis[dis.index(ABSTRACT) + len(ABSTRACT) :]
    )
    assert parse_prompt(frankenstein) is None


def test_entity_format_matches_the_published_file() -> None:
    assert format_entities(["lithium", "Lithium"]) == "- lithium\n- Lithium"
    assert format_entities([]) == "- "  # the real file's empty target


def test_relation_format() -> None:
    assert format_relation("lithium", "goiter") == "Chemical lithium influences disease goiter"
    pairs = [("lithium", "goiter"), ("None", "hypothyroidism")]
    assert format_relations(pairs) == (
        "- Chemical lithium influences disease goiter\n"
        "- Chemical None influences disease hypothyroidism"
    )
    assert format_relations([]) == ""


@pytest.mark.parametrize(
    "text, items",
    [
        ("- a\n- b", ["a", "b"]),
        ("- ", []),
        ("", []),
        ("* a\n\u2022 b\n1. c\n2) d", ["a", "b", "c", "d"]),
        ("  -   spaced out  \n\n- next", ["spaced out", "next"]),
        ("no bullet\n- bullet", ["no bullet", "bullet"]),
        ("- - double", ["- double"]),  # one marker removed, not all
        (
            "- 5-fluorouracil\n- 3,4-methylenedioxymethamphetamine",
            ["5-fluorouracil", "3,4-methylenedioxymethamphetamine"],
        ),
        ("- a\r\n- b\r\n", ["a", "b"]),
    ],
)
def test_parse_items(text: str, items: list[str]) -> None:
    assert parse_items(text) == items


def test_format_then_parse_round_trip() -> None:
    names = ["cisplatin", "N-acetylcysteine", "Cisplatin"]
    assert parse_items(format_entities(names)) == names
    pairs = [("cisplatin", "acute kidney injury"), ("None", "goiter")]
    assert [parse_relation(i) for i in parse_items(format_relations(pairs))] == pairs


@pytest.mark.parametrize(
    "item, pair",
    [
        ("Chemical lithium influences disease goiter", ("lithium", "goiter")),
        (
            "chemical  lithium carbonate INFLUENCES disease  renal failure ",
            ("lithium carbonate", "renal failure"),
        ),
        ("Chemical None influences disease hepatitis B", ("None", "hepatitis B")),
        # the chemical is the shortest match; the rest is the disease
        (
            "Chemical a influences disease b influences disease c",
            ("a", "b influences disease c"),
        ),
        ("lithium causes goiter", None),
        ("Chemical lithium influences disease", None),
        ("", None),
    ],
)
def test_parse_relation(item: str, pair: tuple[str, str] | None) -> None:
    assert parse_relation(item) == pair


def test_parse_relation_collapses_whitespace_only_when_asked() -> None:
    item = "Chemical  lithium\tcarbonate  influences \u00a0disease  renal   failure"
    assert parse_relation(item) is None  # the template's single spaces (strict)
    assert parse_relation(item, collapse_whitespace=True) == ("lithium carbonate", "renal failure")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Cisplatin", "cisplatin"),
        ("  acute   kidney\tinjury. ", "acute kidney injury"),
        ("5\u2010fluorouracil", "5-fluorouracil"),  # Unicode hyphen
        ("\u2212 sign", "- sign"),  # minus sign
        ("\uff2c\uff49\uff54\uff48\uff49\uff55\uff4d", "lithium"),  # full-width (NFKC)
        ("STRASSE", "strasse"),
        ("Stra\u00dfe", "strasse"),  # casefold, not lower
        ("goiter;:", "goiter"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_matches_case_variants_only() -> None:
    assert normalize("Tardive dyskinesia") == normalize("tardive dyskinesia")
    assert normalize("hypertension") != normalize("hypotension")


def test_default_system_prompt_is_the_seeds() -> None:
    assert DEFAULT_SYSTEM_PROMPT == (
        "You are a medical NER expert. "
        "Extract the requested entities from medical texts accurately."
    )
