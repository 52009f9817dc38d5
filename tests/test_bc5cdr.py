"""The BC5CDR builder: its rules on a fixture of our own, the shipped sample, the real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import conftest
import pytest

from preprocessing.bc5cdr import build_file, read_pubtator
from preprocessing.task import build_prompt, parse_items, parse_prompt, parse_relation

REPO, SHARED = conftest.REPO, conftest.SHARED_DATA
SAMPLE_PUBTATOR = REPO / "data" / "sample" / "sample.PubTator.txt"
SAMPLE_JSONL = REPO / "data" / "sample" / "sample_instruct.jsonl"


def pubtator(pmid: str, title: str, abstract: str, mentions: list, cids: list) -> str:
    """One PubTator document; mentions are (text, type, ids, 't'|'a') and get their offsets
    from the first occurrence in that part at or after the previous mention of the same part."""
    lines = [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
    cursor = {"t": 0, "a": 0}
    for text, kind, ids, part in mentions:
        base, body = (0, title) if part == "t" else (len(title) + 1, abstract)
        index = body.index(text, cursor[part])
        cursor[part] = index + len(text)
        lines.append(f"{pmid}\t{base + index}\t{base + index + len(text)}\t{text}\t{kind}\t{ids}")
    lines += [f"{pmid}\tCID\t{c}\t{d}" for c, d in cids]
    return "\n".join(lines) + "\n\n"


TITLE_A = "Zolamide causes rash and Gout."
ABSTRACT_A = (
    "Zolamide and zolamide-B were given. Rash, rash and fever followed; Probex was inactive."
)
DOC_A = pubtator(
    "1001",
    TITLE_A,
    ABSTRACT_A,
    [
        ("Zolamide", "Chemical", "C1", "t"),
        ("rash", "Disease", "D1", "t"),
        ("Gout", "Disease", "D9", "t"),  # title only: not an entity of the abstract
        ("Zolamide", "Chemical", "C1", "a"),  # starts exactly at len(title) + 1
        ("zolamide-B", "Chemical", "-1", "a"),  # unnormalised: listed, never a relation side
        ("Rash", "Disease", "D1", "a"),
        ("rash", "Disease", "D1", "a"),
        ("fever", "Disease", "D2|D3", "a"),
        ("Probex", "Chemical", "C2|C3", "a"),
    ],
    [("C1", "D1"), ("C1", "D9"), ("C3", "D2"), ("C1", "D3")],
)
TITLE_B = "Kinetics of Probex."
ABSTRACT_B = "Probex and Probex-\u03b1 clearance fell; Probex was stopped."
DOC_B = pubtator(
    "1002",
    TITLE_B,
    ABSTRACT_B,
    [
        ("Probex", "Chemical", "C2", "t"),
        ("Probex", "Chemical", "C2", "a"),
        ("Probex-\u03b1", "Chemical", "C4", "a"),
        ("Probex", "Chemical", "C2", "a"),
    ],
    [],
)
EXPECTED = [
    {
        "prompt": build_prompt("chemical", ABSTRACT_A),
        "completion": "- Zolamide\n- zolamide-B\n- Probex",
    },
    {"prompt": build_prompt("disease", ABSTRACT_A), "completion": "- Rash\n- rash\n- fever"},
    {"prompt": build_prompt("chemical", ABSTRACT_B), "completion": "- Probex\n- Probex-\u03b1"},
    {"prompt": build_prompt("disease", ABSTRACT_B), "completion": "- "},
    {
        "prompt": build_prompt("relation", ABSTRACT_A),
        "completion": "- Chemical Zolamide influences disease rash\n"
        "- Chemical Zolamide influences disease Gout\n"
        "- Chemical None influences disease fever\n"
        "- Chemical Zolamide influences disease None",
    },
    {"prompt": build_prompt("relation", ABSTRACT_B), "completion": ""},
]


@pytest.fixture
def two_files(tmp_path: Path) -> list[Path]:
    first, second = tmp_path / "train.PubTator.txt", tmp_path / "dev.PubTator.txt"
    first.write_text(DOC_A, encoding="utf-8")
    second.write_text(DOC_B, encoding="utf-8")
    return [first, second]


def test_builder_rules_on_fixture(two_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "instruct.jsonl"
    assert build_file(two_files, out) == 6
    raw = out.read_bytes()
    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert rows == EXPECTED
    # json.dumps defaults: ASCII escapes, ", " and ": " separators, one object per "\n" line
    assert raw == b"".join(json.dumps(row).encode() + b"\n" for row in EXPECTED)
    assert b"\\u03b1" in raw and "\u03b1".encode() not in raw


def test_file_order_decides_document_order(two_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "reversed.jsonl"
    build_file(list(reversed(two_files)), out)
    abstracts = [parse_prompt(json.loads(line)["prompt"])[1] for line in out.open()]
    assert abstracts == [ABSTRACT_B] * 2 + [ABSTRACT_A] * 2 + [ABSTRACT_B, ABSTRACT_A]


def test_read_pubtator_parses_ids_and_relations(two_files: list[Path]) -> None:
    (doc,) = read_pubtator(two_files[0])
    assert (doc.pmid, doc.title, doc.abstract) == ("1001", TITLE_A, ABSTRACT_A)
    assert [m.ids for m in doc.mentions if m.text in ("zolamide-B", "fever")] == [[], ["D2", "D3"]]
    assert doc.relations == [("C1", "D1"), ("C1", "D9"), ("C3", "D2"), ("C1", "D3")]


def test_crlf_pubtator_builds_the_same(two_files: list[Path], tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.PubTator.txt"
    crlf.write_bytes(two_files[0].read_bytes().replace(b"\n", b"\r\n"))
    lf_out, crlf_out = tmp_path / "lf.jsonl", tmp_path / "crlf.jsonl"
    build_file([two_files[0]], lf_out)
    build_file([crlf], crlf_out)
    assert crlf_out.read_bytes() == lf_out.read_bytes()


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("1001\t5\t9\tthing\tChemical", "got 5 columns"),
        ("1001\tfive\t9\tthing\tChemical\tC1", "invalid literal"),
    ],
)
def test_malformed_pubtator_line_names_file_and_line(
    tmp_path: Path, bad_line: str, problem: str
) -> None:
    path = tmp_path / "bad.PubTator.txt"
    path.write_text(DOC_A.replace("\n\n", f"\n{bad_line}\n\n"), encoding="utf-8")
    bad_lineno = DOC_A.count("\n")  # the line after the last CID row
    with pytest.raises(ValueError, match=problem) as err:
        read_pubtator(path)
    assert f"{path}:{bad_lineno}:" in str(err.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m preprocessing ARGS`, stdout and stderr kept apart."""
    return conftest.run_cli(["preprocessing", *args], timeout=120, merge_stderr=False)


def test_cli_builds_and_reports(two_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    result = run_cli("build-bc5cdr", *map(str, two_files), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 6 rows" in result.stdout
    assert [json.loads(line) for line in out.open()] == EXPECTED


def test_cli_missing_pubtator_fails_clearly(tmp_path: Path) -> None:
    result = run_cli("build-bc5cdr", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"))
    assert result.returncode != 0
    assert "nope.txt" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_cli_malformed_pubtator_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "bad.PubTator.txt"
    path.write_text("1001|t|T.\n1001|a|A.\n1001\t0\tx\n", encoding="utf-8")
    result = run_cli("build-bc5cdr", str(path), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode != 0
    assert f"{path}:3:" in result.stderr


# ---- the shipped sample ---------------------------------------------------------------------


def test_sample_jsonl_is_built_from_sample_pubtator(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    assert build_file([SAMPLE_PUBTATOR], out) == 60
    assert out.read_bytes() == SAMPLE_JSONL.read_bytes()


def test_sample_offsets_match_the_text() -> None:
    docs: dict[str, str] = {}
    n_mentions = 0
    for line in SAMPLE_PUBTATOR.read_text(encoding="utf-8").splitlines():
        if "|t|" in line or "|a|" in line:
            pmid, _, text = line.split("|", 2)
            docs[pmid] = docs[pmid] + " " + text if pmid in docs else text
        elif line and line.split("\t")[1] != "CID":
            pmid, start, end, text, kind, _ids, *_ = line.split("\t")
            assert docs[pmid][int(start) : int(end)] == text, line
            assert kind in ("Chemical", "Disease")
            n_mentions += 1
    assert len(docs) == 20 and n_mentions > 100


def test_sample_has_the_real_files_quirks() -> None:
    docs = read_pubtator(SAMPLE_PUBTATOR)
    rows = [json.loads(line) for line in SAMPLE_JSONL.open()]
    by_task: dict[str, list[list[str]]] = {"chemical": [], "disease": [], "relation": []}
    for row in rows:
        by_task[parse_prompt(row["prompt"])[0]].append(parse_items(row["completion"]))
    assert [len(v) for v in by_task.values()] == [20, 20, 20]
    assert [] in by_task["disease"]  # an abstract without diseases ("- ")
    pairs = [parse_relation(item) for items in by_task["relation"] for item in items]
    assert any(chem == "None" for chem, _ in pairs)  # chemical only under a non-first id
    assert any(dis == "None" for _, dis in pairs)
    assert any(  # the same name in another case within one list
        len({i.casefold() for i in items}) < len(items) for items in by_task["chemical"]
    )
    raw = SAMPLE_PUBTATOR.read_text(encoding="utf-8")
    assert "\t-1\n" in raw and any(len(m.ids) > 1 for d in docs for m in d.mentions)
    # a name mentioned only in the title: not an entity, yet a relation side
    title_only = {
        (m.text, m.type)
        for d in docs
        for m in d.mentions
        if m.start < len(d.title) and m.text not in d.abstract
    }
    assert ("Valproate", "Chemical") in title_only and ("epilepsy", "Disease") in title_only
    assert not any(
        "Valproate" in items or "epilepsy" in items for v in by_task.values() for items in v
    )
    assert ("Valproate", "hepatotoxicity") in pairs


# ---- the real files (skipped where ../shared is absent) -------------------------------------


@pytest.mark.skipif(not (SHARED / "bc5cdr").is_dir(), reason="../shared/data/bc5cdr not present")
def test_shared_files_round_trip_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "both_rel_instruct_all.jsonl"
    bc5cdr = SHARED / "bc5cdr"
    paths = [bc5cdr / "CDR_TrainingSet.PubTator.txt", bc5cdr / "CDR_DevelopmentSet.PubTator.txt"]
    assert build_file(paths, out) == 3000
    assert out.read_bytes() == (SHARED / "both_rel_instruct_all.jsonl").read_bytes()
