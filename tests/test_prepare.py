"""prepare: validation line by line, findings and repairs, the split by abstract, the chat rows."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import conftest
import pytest

from preprocessing.prepare import (
    MissingInputError,
    RejectedRowsError,
    doc_id_of,
    is_stale,
    prepare,
)
from preprocessing.task import DEFAULT_SYSTEM_PROMPT, TASKS, build_prompt, parse_prompt, task_of

REPO, SAMPLE = conftest.REPO, conftest.SAMPLE
SHARED_FILE = conftest.SHARED_DATA / "both_rel_instruct_all.jsonl"
SPLITS = ("train", "validation", "test")
COMPLETIONS = {
    "chemical": "- cisplatin",
    "disease": "- nephrotoxicity",
    "relation": "- Chemical cisplatin influences disease nephrotoxicity",
}


def abstract(i: int) -> str:
    return f"Study {i}: cisplatin caused nephrotoxicity in {i + 3} of 40 rats."


def row(i: int, task: str, completion: str | None = None) -> str:
    prompt = build_prompt(task, abstract(i))
    return json.dumps({"prompt": prompt, "completion": completion or COMPLETIONS[task]})


def rows_for(docs: range, tasks: tuple[str, ...] = TASKS) -> list[str]:
    return [row(i, task) for i in docs for task in tasks]


# Two more abstracts (one disease row each): a file needs 3 abstracts to give every split one.
FILLER = [row(i, "disease") for i in (101, 102)]


def write(path: Path, lines: list[str | bytes], end: bytes = b"\n") -> Path:
    data = [line if isinstance(line, bytes) else line.encode("utf-8") for line in lines]
    path.write_bytes(b"".join(line + end for line in data))
    return path


def read_split(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").open(encoding="utf-8")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m preprocessing ARGS`, stdout and stderr kept apart."""
    return conftest.run_cli(["preprocessing", *args], timeout=120, merge_stderr=False)


# ---- bad input: one test per class ----------------------------------------------------------

GOOD_PROMPT = build_prompt("chemical", abstract(0))
BAD_LINES = [
    pytest.param('{"prompt": "x", "completion": ', "not JSON", id="truncated-json"),
    pytest.param("prompt=x completion=y", "not JSON", id="not-json"),
    pytest.param('["a", "b"]', "not a JSON object (got array)", id="array"),
    pytest.param('"just a string"', "not a JSON object (got string)", id="string"),
    pytest.param("null", "not a JSON object (got null)", id="null"),
    pytest.param("42", "not a JSON object (got number)", id="number"),
    pytest.param('{"completion": "- a"}', "'prompt' missing", id="prompt-missing"),
    pytest.param(
        json.dumps({"prompt": GOOD_PROMPT}), "'completion' missing", id="completion-missing"
    ),
    pytest.param(
        '{"prompt": 5, "completion": "- a"}',
        "'prompt' is not a string (got number)",
        id="prompt-int",
    ),
    pytest.param(
        json.dumps({"prompt": GOOD_PROMPT, "completion": ["a"]}),
        "'completion' is not a string (got array)",
        id="completion-list",
    ),
    pytest.param(
        json.dumps({"prompt": GOOD_PROMPT, "completion": None}),
        "'completion' is not a string (got null)",
        id="completion-null",
    ),
    pytest.param('{"prompt": "", "completion": "- a"}', "empty prompt", id="empty-prompt"),
    pytest.param('{"prompt": " \\n ", "completion": "- a"}', "empty prompt", id="blank-prompt"),
    pytest.param(
        '{"prompt": "Summarise this abstract: lithium.", "completion": "- a"}',
        "matches none of the three tasks",
        id="unknown-task",
    ),
    pytest.param(
        json.dumps({"prompt": build_prompt("disease", ""), "completion": "- "}),
        "empty abstract",
        id="empty-abstract",
    ),
]


@pytest.mark.parametrize("bad, reason", BAD_LINES)
def test_each_bad_line_class_is_rejected_with_its_line(
    tmp_path: Path, bad: str, reason: str
) -> None:
    src = write(tmp_path / "in.jsonl", [row(1, "chemical"), bad, row(1, "disease"), *FILLER])
    manifest = prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert len(rejects) == 1
    assert rejects[0]["line"] == 2 and rejects[0]["raw"] == bad
    assert reason in rejects[0]["reason"]
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (5, 4, 1)


def test_duplicate_prompt_with_same_completion(tmp_path: Path) -> None:
    lines = [row(1, "chemical"), row(1, "disease"), row(1, "chemical"), *FILLER]
    src = write(tmp_path / "in.jsonl", lines)
    prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["line"] == 3
    assert reject["reason"] == "duplicate prompt of line 1 (same completion)"


def test_duplicate_prompt_with_conflicting_completion(tmp_path: Path) -> None:
    lines = [row(1, "chemical"), row(1, "disease"), row(1, "chemical", "- cisplatin\n- saline")]
    src = write(tmp_path / "in.jsonl", [*lines, *FILLER])
    prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["line"] == 3
    assert reject["reason"] == "duplicate prompt of line 1 (conflicting completion)"
    # the first occurrence is the one kept
    kept = [r for split in SPLITS for r in read_split(tmp_path / "out", split)]
    assert [r["completion"] for r in kept if r["task"] == "chemical"] == ["- cisplatin"]


def test_non_utf8_line_is_rejected_alone(tmp_path: Path) -> None:
    bad = row(2, "chemical").encode("utf-8").replace(b"cisplatin", b"cispl\xe4tin")
    src = write(tmp_path / "in.jsonl", [row(1, "chemical"), bad, row(1, "disease"), *FILLER])
    manifest = prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["line"] == 2 and reject["reason"].startswith("not UTF-8: byte 0xe4")
    assert reject["raw"] == bad.decode("utf-8", errors="backslashreplace")
    assert "cispl\\xe4tin" in reject["raw"]
    assert manifest["rows_kept"] == 4  # the lines around it survive


# ---- benign quirks ------------------------------------------------------------------------


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    lines = [b"\xef\xbb\xbf" + row(1, "chemical").encode(), b"", row(1, "disease").encode()]
    lines += [b"   ", row(1, "relation").encode(), b"", b"not json"]
    lines += [line.encode() for line in FILLER]
    src = write(tmp_path / "in.jsonl", lines, end=b"\r\n")
    manifest = prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    assert manifest["blank_lines"] == 3  # blank lines are not rows
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (6, 5, 1)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["line"] == 7  # physical line number, blank lines counted
    assert reject["raw"] == "not json"  # no "\r" left
    kept = [r for split in SPLITS for r in read_split(tmp_path / "out", split)]
    fillers = {json.loads(line)["prompt"] for line in FILLER}
    assert {r["prompt"] for r in kept} == {build_prompt(t, abstract(1)) for t in TASKS} | fillers
    assert not any("\r" in r["completion"] or "\ufeff" in r["prompt"] for r in kept)


def test_missing_final_newline_is_fine(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows_for(range(1, 4))), encoding="utf-8")
    manifest = prepare(src, tmp_path / "out", show_progress=False)
    assert (manifest["rows_in"], manifest["rows_kept"]) == (9, 9)


# ---- exit codes and the summary ---------------------------------------------------------------


@pytest.fixture
def corrupted(tmp_path: Path) -> Path:
    """20 abstracts x 3 tasks with two bad lines in between: lines 5 and 33."""
    lines: list[str | bytes] = list(rows_for(range(20)))
    lines.insert(4, b'{"prompt": "\xff\xfe", "completion": "- a"}')
    lines.insert(32, '{"prompt": "half a line')
    return write(tmp_path / "corrupted.jsonl", lines)


def test_rejects_fail_without_allow_rejects(corrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("prepare", str(corrupted), "--out", str(out))
    assert result.returncode == 1
    assert "line 5: not UTF-8" in result.stderr and "line 33: not JSON" in result.stderr
    assert "rows in: 62 = kept 60 + rejected 2" in result.stderr
    assert "--allow-rejects" in result.stderr
    assert [r["line"] for r in read_jsonl(out / "rejects.jsonl")] == [5, 33]
    assert not (out / "train.jsonl").exists()  # nothing a trainer could pick up
    with pytest.raises(RejectedRowsError, match="line 5"):
        prepare(corrupted, tmp_path / "api", show_progress=False)


def test_allow_rejects_completes_and_loses_nothing(corrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("prepare", str(corrupted), "--out", str(out), "--allow-rejects")
    assert result.returncode == 0, result.stderr
    assert "rows in: 62 = kept 60 + rejected 2" in result.stdout
    kept = [r for split in SPLITS for r in read_split(out, split)]
    rejects = read_jsonl(out / "rejects.jsonl")
    physical = corrupted.read_bytes().split(b"\n")[:-1]
    assert len(kept) + len(rejects) == len(physical)
    assert {r["prompt"] for r in kept} == {
        json.loads(line)["prompt"] for line in rows_for(range(20))
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"] == 62


def test_missing_input_says_how_to_get_it(tmp_path: Path) -> None:
    result = run_cli("prepare", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "absent.jsonl" in result.stderr and "not found" in result.stderr
    assert "data/both_rel_instruct_all.jsonl" in result.stderr
    assert "make build-bc5cdr BC5CDR=" in result.stderr and "build-bc5cdr" in result.stderr
    with pytest.raises(MissingInputError):
        prepare(tmp_path / "absent.jsonl", tmp_path / "out")


# ---- findings and repairs -----------------------------------------------------------------


def test_findings_are_counted_and_listed(tmp_path: Path) -> None:
    lines = [
        row(1, "chemical", "- "),  # empty target
        row(1, "disease", "- Gout\n- gout\n- fever\n- fever"),  # case variants + repeated item
        row(1, "relation", "- Chemical None influences disease gout\n- lithium causes gout"),
    ]
    src = write(tmp_path / "in.jsonl", [*lines, *FILLER])
    manifest = prepare(src, tmp_path / "out", show_progress=False)
    assert manifest["findings"] == {
        "empty_target": 1,
        "none_relation": 1,
        "repeated_item": 1,
        "case_variants": 1,
        "malformed_relation": 1,
        "control_characters": 0,
        "long_row": 0,
    }
    findings = read_jsonl(tmp_path / "out" / "findings.jsonl")
    assert {(f["line"], f["kind"]) for f in findings} == {
        (1, "empty_target"),
        (2, "case_variants"),
        (2, "repeated_item"),
        (3, "none_relation"),
        (3, "malformed_relation"),
    }
    report = (tmp_path / "out" / "report.md").read_text()
    assert "case_variants: 1" in report and "Gout / gout" in report


def test_none_relations_are_dropped_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = prepare(SAMPLE, out, show_progress=False)
    repairs = read_jsonl(out / "repairs.jsonl")
    assert manifest["repairs"] == len(repairs) == 2
    assert repairs == [
        {
            "line": 47,
            "task": "relation",
            "dropped": "- Chemical gentamicin influences disease None",
            "reason": "disease is None (no mention carries that MeSH id first)",
        },
        {
            "line": 48,
            "task": "relation",
            "dropped": "- Chemical None influences disease Stevens-Johnson syndrome",
            "reason": "chemical is None (no mention carries that MeSH id first)",
        },
    ]
    rows = {r["prompt"]: r for split in SPLITS for r in read_split(out, split)}
    sample = read_jsonl(SAMPLE)
    repaired = rows[sample[46]["prompt"]]
    assert (
        repaired["completion"] == "- Chemical gentamicin influences disease oto- and nephrotoxicity"
    )
    assert repaired["messages"][-1]["content"] == repaired["completion"]
    assert not any("None" in r["completion"] for r in rows.values())


def test_keep_none_relations_flag(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("prepare", str(SAMPLE), "--out", str(out), "--keep-none-relations")
    assert result.returncode == 0, result.stderr
    assert read_jsonl(out / "repairs.jsonl") == []
    rows = {r["prompt"]: r["completion"] for split in SPLITS for r in read_split(out, split)}
    assert {r["prompt"]: r["completion"] for r in read_jsonl(SAMPLE)} == rows


# ---- the split ------------------------------------------------------------------------------


def split_docs(out: Path) -> dict[str, set[str]]:
    docs = {}
    for split in SPLITS:
        docs[split] = {parse_prompt(r["prompt"])[1] for r in read_split(out, split)}
    return docs


def test_sample_splits_16_2_2_without_overlap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("prepare", str(SAMPLE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["abstracts"] == {"train": 16, "validation": 2, "test": 2}
    assert [manifest["rows"][s]["total"] for s in SPLITS] == [48, 6, 6]
    docs = split_docs(out)  # recomputed from the abstracts' text, not taken from the manifest
    assert [len(docs[s]) for s in SPLITS] == [16, 2, 2]
    assert not docs["train"] & docs["test"] and not docs["train"] & docs["validation"]
    assert not docs["validation"] & docs["test"]
    assert manifest["overlap"] == {"train/validation": 0, "train/test": 0, "validation/test": 0}


def test_split_is_80_10_10_by_abstract(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", rows_for(range(250)))
    prepare(src, tmp_path / "out", show_progress=False)
    placed: dict[str, set[str]] = defaultdict(set)
    for split in SPLITS:
        rows = read_split(tmp_path / "out", split)
        assert len(rows) == {"train": 600, "validation": 75, "test": 75}[split]
        assert Counter(r["task"] for r in rows) == {t: len(rows) // 3 for t in TASKS}
        for r in rows:
            placed[r["doc_id"]].add(split)
    assert len(placed) == 250
    assert all(len(splits) == 1 for splits in placed.values())  # all tasks of an abstract together


def test_tiny_input_still_gets_validation_and_test(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", rows_for(range(5)))  # 10 % of 5 rounds to 0
    manifest = prepare(src, tmp_path / "out", show_progress=False)
    assert manifest["abstracts"] == {"train": 3, "validation": 1, "test": 1}


def test_split_is_stratified_by_task_set(tmp_path: Path) -> None:
    lines = rows_for(range(60)) + rows_for(range(60, 100), ("chemical", "disease"))
    src = write(tmp_path / "in.jsonl", lines)
    manifest = prepare(src, tmp_path / "out", show_progress=False)
    full, partial = "chemical+disease+relation", "chemical+disease"
    assert manifest["abstracts_by_task_set"] == {
        "train": {partial: 32, full: 48},
        "validation": {partial: 4, full: 6},
        "test": {partial: 4, full: 6},
    }
    for split, n_full in (("train", 48), ("validation", 6), ("test", 6)):
        tasks = Counter(r["task"] for r in read_split(tmp_path / "out", split))
        assert tasks["relation"] == n_full


def test_rerun_is_byte_identical_and_order_free(tmp_path: Path) -> None:
    lines = rows_for(range(40))
    src = write(tmp_path / "in.jsonl", lines)
    prepare(src, tmp_path / "a", show_progress=False)
    prepare(src, tmp_path / "b", show_progress=False)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(
        ["train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json", "report.md"]
        + ["rejects.jsonl", "repairs.jsonl", "findings.jsonl"]
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # the split depends on the abstracts and the seed, not on where the lines are
    shuffled = write(tmp_path / "shuffled.jsonl", random.Random(0).sample(lines, len(lines)))
    prepare(shuffled, tmp_path / "c", show_progress=False)
    assert split_docs(tmp_path / "a") == split_docs(tmp_path / "c")


def test_seed_changes_the_split(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", rows_for(range(40)))
    prepare(src, tmp_path / "s42", seed=42, show_progress=False)
    prepare(src, tmp_path / "s7", seed=7, show_progress=False)
    assert split_docs(tmp_path / "s42")["test"] != split_docs(tmp_path / "s7")["test"]


def test_sample_split_is_pinned_across_machines(tmp_path: Path) -> None:
    """doc_id and split come from sha256 alone, so they are the same on every machine and Python
    version. If this fails the split changed: earlier runs' test sets are no longer comparable."""
    prepare(SAMPLE, tmp_path / "out", show_progress=False)
    for r in read_split(tmp_path / "out", "train"):
        text = " ".join(parse_prompt(r["prompt"])[1].split())
        assert r["doc_id"] == hashlib.sha256(text.encode()).hexdigest()[:16]
    pinned = {
        "validation": ["1a1026b6de905cda", "ff63e2bbcb0d591d"],  # haloperidol, warfarin
        "test": ["46e16e54c182f361", "51c0ff1599d064b5"],  # doxorubicin, ondansetron
    }
    for split, doc_ids in pinned.items():
        assert sorted({r["doc_id"] for r in read_split(tmp_path / "out", split)}) == doc_ids


# ---- the chat rows ------------------------------------------------------------------------


def test_chat_rows_format(tmp_path: Path) -> None:
    prepare(SAMPLE, tmp_path / "out", show_progress=False)
    by_doc: dict[str, set[str]] = defaultdict(set)
    for split in SPLITS:
        for r in read_split(tmp_path / "out", split):
            assert list(r) == ["messages", "task", "doc_id", "prompt", "completion"]
            assert r["messages"] == [
                {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["completion"]},
            ]
            task, text = parse_prompt(r["prompt"])
            assert r["task"] == task == task_of(r["prompt"])
            assert r["doc_id"] == doc_id_of(text)
            by_doc[r["doc_id"]].add(task)
    assert len(by_doc) == 20 and all(tasks == set(TASKS) for tasks in by_doc.values())


def test_system_prompt_option(tmp_path: Path) -> None:
    result = run_cli(
        "prepare", str(SAMPLE), "--out", str(tmp_path / "a"), "--system-prompt", "Be brief."
    )
    assert result.returncode == 0, result.stderr
    assert {r["messages"][0]["content"] for r in read_split(tmp_path / "a", "train")} == {
        "Be brief."
    }
    prepare(SAMPLE, tmp_path / "b", system_prompt="", show_progress=False)
    roles = {tuple(m["role"] for m in r["messages"]) for r in read_split(tmp_path / "b", "test")}
    assert roles == {("user", "assistant")}  # '' = no system turn


def test_doc_id_ignores_rewrapping() -> None:
    assert doc_id_of("Lithium  raised\nTSH.") == doc_id_of("Lithium raised TSH.")
    assert doc_id_of("Lithium raised TSH.") != doc_id_of("Lithium raised T4.")


# ---- staleness (the training launcher re-prepares when this says so) ------------------------


def test_is_stale(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", rows_for(range(10)))
    out = tmp_path / "out"
    assert is_stale(src, out)  # nothing there yet
    prepare(src, out, seed=3, show_progress=False)
    assert not is_stale(src, out)
    assert not is_stale(src, out, seed=3, system_prompt=DEFAULT_SYSTEM_PROMPT)
    assert is_stale(src, out, seed=42)
    assert is_stale(src, out, keep_none_relations=True)
    write(src, rows_for(range(11)))  # the input changed
    assert is_stale(src, out)
    prepare(src, out, seed=3, show_progress=False)
    (out / "test.jsonl").unlink()
    assert is_stale(src, out)


# ---- the real file (skipped where ../shared is absent) --------------------------------------


@pytest.mark.skipif(not SHARED_FILE.is_file(), reason="../shared/data not present")
def test_shared_file_splits_2400_300_300_quickly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.perf_counter()
    manifest = prepare(SHARED_FILE, out, show_progress=False)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"prepare took {elapsed:.1f} s on 3,000 rows"
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (
        3000,
        3000,
        0,
    )
    assert [len(read_split(out, s)) for s in SPLITS] == [2400, 300, 300]
    docs = split_docs(out)
    assert [len(docs[s]) for s in SPLITS] == [800, 100, 100]
    assert not (docs["train"] & docs["test"] or docs["train"] & docs["validation"])
    assert not docs["validation"] & docs["test"]
    for split in SPLITS:
        counts = Counter(r["task"] for r in read_split(out, split))
        assert set(counts.values()) == {len(docs[split])}  # same task mix everywhere
    # the real file's known quirks
    assert manifest["findings"]["empty_target"] == 6
    assert manifest["findings"]["none_relation"] == manifest["repairs"] == 44
