"""`Extractor` and `python -m inference extract`: the training prompts, one decode for all of
them, and well-formed JSON whatever the model or the input looks like."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, read_jsonl

import inference.extract
from inference.decode import Generation
from inference.extract import Extractor, parse_answers
from inference.inputs import read_abstracts
from inference.run import RunError
from preprocessing.files import FileFormatError
from preprocessing.task import TASKS, parse_prompt

pytestmark = pytest.mark.slow

GARBAGE = "}{ \x00\x7f ][ 12 ### \u2603\u2603 -- ;;; " * 20
NEW_TOKENS = 24


def check_result(result: dict) -> None:
    """The JSON contract of one abstract's result."""
    assert list(result) == ["chemicals", "diseases", "relations", "format_errors"]
    assert all(isinstance(x, str) and x for x in result["chemicals"] + result["diseases"])
    for relation in result["relations"]:
        assert set(relation) == {"chemical", "disease"}
        assert all(isinstance(v, str) and v for v in relation.values())
    for error in result["format_errors"]:
        assert error["task"] in TASKS and isinstance(error["problem"], str)
    json.loads(json.dumps(result))  # plain JSON types only


@pytest.fixture(scope="module")
def extractor(tiny_run) -> Extractor:
    return Extractor(tiny_run, max_new_tokens=NEW_TOKENS)


@pytest.fixture(scope="module")
def sample_abstracts(processed_sample) -> list[str]:
    rows = read_jsonl(processed_sample / "test.jsonl")
    return list(dict.fromkeys(parse_prompt(row["prompt"])[1] for row in rows))


def test_prompts_are_the_training_messages(extractor, processed_sample):
    """Same system prompt, same user turn as the processed rows the run was trained/tested on."""
    for row in read_jsonl(processed_sample / "test.jsonl")[:6]:
        abstract = parse_prompt(row["prompt"])[1]
        assert extractor.messages(row["task"], abstract) == row["messages"][:-1]


def test_prompts_reused_from_earlier_calls_are_the_ones_encoded_afresh(
    extractor, sample_abstracts, monkeypatch
):
    """The service measures each request's prompts, then its batch reuses them: same ids as
    encoding the batch in one go, duplicates included, and nothing encoded twice."""
    texts = [f"{sample_abstracts[0]} Case {n}." for n in range(4)]
    afresh = inference.extract.encode_chats(
        extractor.tokenizer, [extractor.messages(t, x) for x in texts for t in TASKS]
    )
    monkeypatch.setattr(inference.extract, "RECENT_PROMPTS", 3)
    extractor._recent_prompts.clear()
    assert extractor.prompts(texts[1:2]) == afresh[3:6]
    encoded: list[int] = []
    original = inference.extract.encode_chats

    def counting(tokenizer, chats):
        encoded.append(len(chats))
        return original(tokenizer, chats)

    monkeypatch.setattr(inference.extract, "encode_chats", counting)
    assert extractor.prompts([*texts, texts[0]]) == afresh + afresh[:3]
    assert encoded == [3 * 3]  # texts 0, 2 and 3 once each; text 1 was known
    # The 3 most recently used are kept, least recent first.
    assert list(extractor._recent_prompts) == [texts[2], texts[3], texts[0]]


def test_real_and_garbage_abstracts_in_one_decode(extractor, sample_abstracts, monkeypatch):
    calls = []
    original = inference.extract.generate_greedy

    def counting_decode(model, tokenizer, prompts, *args, **kwargs):
        calls.append(len(prompts))
        return original(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(inference.extract, "generate_greedy", counting_decode)
    results = extractor.extract([sample_abstracts[0], GARBAGE])
    assert calls == [2 * len(TASKS)]  # both abstracts' three prompts in a single decode
    assert extractor.last_stats["engine"] == "fast"
    assert extractor.last_stats["admissions"] == [2 * len(TASKS)]  # decoded together
    assert len(results) == 2
    for result in results:
        check_result(result)


def test_extraction_is_deterministic(extractor, sample_abstracts):
    """Greedy decoding: the same abstracts give the same results every time."""
    assert extractor.extract(sample_abstracts[:2]) == extractor.extract(sample_abstracts[:2])


def test_empty_input_is_refused(extractor):
    with pytest.raises(RunError, match="text 2"):
        extractor.extract(["An abstract.", "   "])
    assert extractor.extract([]) == []


def test_prompt_budget(extractor, sample_abstracts):
    """What a service checks before decoding: a text's longest prompt against the budget."""
    text = sample_abstracts[0]
    assert extractor.prompt_tokens(text) == max(map(len, extractor.prompts([text])))
    assert extractor.max_prompt_tokens == 2048 - NEW_TOKENS  # the tiny model's context
    too_long = "nephrotoxicity " * 2000
    assert extractor.prompt_tokens(too_long) > extractor.max_prompt_tokens
    with pytest.raises(RunError, match="text 2: its prompt is"):
        extractor.extract([text, too_long])


def test_answers_are_parsed_with_the_task_rules():
    answers = {
        "chemical": Generation("- Cisplatin\n- cisplatin\n- Cisplatin\n", "stop", 9),
        "disease": Generation("Here you go:\n1. nephrotoxicity", "stop", 8),
        "relation": Generation(
            "- Chemical Cisplatin influences disease nephrotoxicity\n"
            "- cisplatin causes kidney damage\n"
            "- Chemical Cisplatin influences disease nephrotoxicity",
            "length",
            40,
        ),
    }
    result = parse_answers(answers)
    check_result(result)
    assert result["chemicals"] == ["Cisplatin", "cisplatin"]  # duplicates collapse, strictly
    assert result["diseases"] == ["Here you go:", "nephrotoxicity"]  # a preamble is an item
    assert result["relations"] == [{"chemical": "Cisplatin", "disease": "nephrotoxicity"}]
    assert result["format_errors"] == [
        {"task": "relation", "problem": "no end of answer within max_new_tokens: cut off"},
        {
            "task": "relation",
            "problem": "not 'Chemical X influences disease Y'",
            "line": "cisplatin causes kidney damage",
        },
    ]


def test_read_abstracts_plain_and_jsonl(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("\n  One abstract.\nSecond line.\n")
    assert [(a.id, a.text) for a in read_abstracts(str(plain))] == [
        ("a", "One abstract.\nSecond line.")
    ]

    rows = tmp_path / "a.jsonl"
    rows.write_text(
        '{"id": 1, "text": "First."}\n\n{"abstract": "Second.", "title": "Not in the prompt"}\n'
    )
    assert [(a.id, a.text) for a in read_abstracts(str(rows))] == [
        ("1", "First."),
        ("3", "Second."),  # no id: the line number
    ]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(FileFormatError, match=r"bad.jsonl:2: .*\"text\" or \"abstract\""):
        read_abstracts(str(bad))
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(FileFormatError, match=r"bad.jsonl:2: not valid JSON"):
        read_abstracts(str(bad))
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(FileFormatError, match="no text"):
        read_abstracts(str(tmp_path / "empty.txt"))


def test_cli_jsonl_to_a_json_list_on_stdout(tiny_run, sample_abstracts, tmp_path):
    source = tmp_path / "abstracts.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"id": "real", "abstract": sample_abstracts[0]},
                {"id": "garbage", "text": GARBAGE},
            ]
        )
        + "\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "inference", "extract", "--run", str(tiny_run),
            "--input", str(source), "--max-new-tokens", str(NEW_TOKENS),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)  # stdout is only JSON
    assert [line.pop("id") for line in results] == ["real", "garbage"]
    for line in results:
        check_result(line)
    assert "extracted 2 abstracts" in result.stderr


def test_cli_bad_input_is_a_clear_error(tiny_run, tmp_path):
    source = tmp_path / "broken.jsonl"
    source.write_text('{"text": "fine"}\n{oops\n')
    result = subprocess.run(
        [sys.executable, "-m", "inference", "extract", "--run", str(tiny_run), "--input", source],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert f"{source}:2: not valid JSON" in result.stderr


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        Extractor(Path(tmp_path / "nope"))
