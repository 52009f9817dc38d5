"""`python -m inference extract` over a corpus: every input format, stdout that is only JSON,
results appended to --out and a rerun after `kill -9` that loses and repeats nothing."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from inference.__main__ import COMMANDS
from preprocessing.bc5cdr import read_pubtator
from preprocessing.cli import run_commands

pytestmark = pytest.mark.slow

PUBTATOR = REPO / "data" / "sample" / "sample.PubTator.txt"
NEW_TOKENS = "8"
FIRST = '{"id": "a", "text": "One."}\n'  # a good first line before the bad one


def extract(*args: object) -> int:
    """`python -m inference extract ARGS` in this process."""
    argv = ["extract", *map(str, args), "--max-new-tokens", NEW_TOKENS]
    return run_commands("python -m inference", None, COMMANDS, argv)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def documents():
    return read_pubtator(PUBTATOR)


def test_every_input_format_gives_the_same_results(tiny_run, documents, tmp_path, capsys):
    """The same three abstracts as JSONL (with titles), .txt files and PubTator: same results,
    ids from each format; stdout is only the JSON list."""
    docs = documents[:3]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"id": d.pmid, "title": d.title, "abstract": d.abstract}) + "\n"
            for d in docs
        )
    )
    folder = tmp_path / "txt"
    folder.mkdir()
    for d in docs:
        (folder / f"{d.pmid}.txt").write_text(d.abstract + "\n")
    pubtator = tmp_path / "in.PubTator.txt"
    pubtator.write_text("".join(f"{d.pmid}|t|{d.title}\n{d.pmid}|a|{d.abstract}\n\n" for d in docs))
    outputs = []
    for source in (jsonl, folder, pubtator):
        assert extract("--run", tiny_run, "--input", source) == 0
        captured = capsys.readouterr()
        outputs.append(json.loads(captured.out))
        assert "extracted 3 abstracts" in captured.err
    assert [r["id"] for r in outputs[0]] == [d.pmid for d in docs]
    assert outputs[0] == outputs[1] == outputs[2]
    for result in outputs[0]:
        assert list(result) == ["id", "chemicals", "diseases", "relations", "format_errors"]


def test_plain_text_from_stdin(tiny_run, documents, capsys, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(("  " + documents[0].abstract + "\n").encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert extract("--run", tiny_run, "--input", "-") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["id"] == "stdin"


def test_killed_run_resumes_without_losing_or_repeating(tiny_run, documents, tmp_path):
    """kill -9 mid-run, plus a torn last line: the rerun adds exactly the missing abstracts, and
    the file equals an uninterrupted run's, id by id."""
    docs = documents[:8]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": d.pmid, "text": d.abstract}) + "\n" for d in docs))
    whole = tmp_path / "whole.jsonl"
    assert extract("--run", tiny_run, "--input", source, "--chunk-size", 1, "--out", whole) == 0
    expected = {row["id"]: row for row in lines_of(whole)}
    assert list(expected) == [d.pmid for d in docs]

    out = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "inference", "extract", "--run", str(tiny_run),
        "--input", str(source), "--chunk-size", "1", "--max-new-tokens", NEW_TOKENS,
        "--out", str(out),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_bytes().count(b"\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "no lines before the kill"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = out.read_bytes().count(b"\n")
    assert 2 <= written < len(docs)  # really killed mid-run
    with open(out, "ab") as handle:  # as if the kill had come in the middle of a write
        handle.write(b'{"id": "' + docs[-1].pmid.encode() + b'", "chemic')

    assert extract("--run", tiny_run, "--input", source, "--chunk-size", 1, "--out", out) == 0
    rows = lines_of(out)
    assert sorted(row["id"] for row in rows) == sorted(expected)  # each id exactly once
    assert {row["id"]: row for row in rows} == expected


def test_finished_output_is_not_redone(tiny_run, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "Aspirin caused ulcers."}\n')
    out = tmp_path / "out.jsonl"
    assert extract("--run", tiny_run, "--input", source, "--out", out) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert extract("--run", tiny_run, "--input", source, "--out", out) == 0
    assert out.read_bytes() == before
    captured = capsys.readouterr()
    assert captured.out == "" and "extracted 0 abstracts" in captured.err
    assert "1 skipped" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (FIRST + '{"id": "a", "text": "Two."}\n', "in.jsonl:2: duplicate id 'a'"),
        (FIRST + "[1, 2]\n", "in.jsonl:2: expected a JSON object"),
        (FIRST + '{"id": "b", "text": "  "}\n', 'in.jsonl:2: expected a non-empty "text"'),
        (FIRST + '{"id": [1], "text": "x"}\n', 'in.jsonl:2: "id" must be'),
        (FIRST + '{"id": "b", "text": \n', "in.jsonl:2: not valid JSON"),
        ("1|t|Title\n1|a|Text\n1\t5\n", "in.jsonl:3: expected a mention or CID row"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, capsys, content, message):
    source = tmp_path / "in.jsonl"
    source.write_text(content)
    # The input is read before the run is even looked at: a bad file costs no model load.
    assert extract("--run", tmp_path / "no-run", "--input", source) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_output_that_is_not_ours_is_refused(tiny_run, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "One."}\n')
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "x"}\nnot json\n{"id": "y"}\n')
    assert extract("--run", tiny_run, "--input", source, "--out", out) == 2
    assert f"{out}:2: not a result line" in capsys.readouterr().err


def test_one_chunk_writes_abstracts_as_they_finish(tiny_run, documents, tmp_path, monkeypatch):
    """All abstracts in one decode (the default chunk): each result reaches OUT as its three
    answers are done, not at the end of the chunk, and the results are those of abstracts
    decoded one at a time."""
    import inference.corpus

    docs = documents[:6]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": d.pmid, "text": d.abstract}) + "\n" for d in docs))
    alone = tmp_path / "alone.jsonl"
    assert extract("--run", tiny_run, "--input", source, "--chunk-size", 1, "--out", alone) == 0
    writes = []
    append = inference.corpus._append
    monkeypatch.setattr(inference.corpus, "FLUSH_SECONDS", 0.0)  # write each result at once
    monkeypatch.setattr(
        inference.corpus, "_append", lambda out, rows: (writes.append(len(rows)), append(out, rows))
    )
    together = tmp_path / "together.jsonl"
    assert extract("--run", tiny_run, "--input", source, "--out", together) == 0
    assert writes == [1] * len(docs)  # one abstract per write, during the decode
    assert {r["id"]: r for r in lines_of(together)} == {r["id"]: r for r in lines_of(alone)}
