"""The scorer against every rule of its definition (README, "Scoring definition")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.score import InputError, score_file, score_rows
from preprocessing.task import build_prompt

ROOT = Path(__file__).resolve().parents[1]


def row(task: str, gold: str, prediction: str) -> dict:
    return {
        "prompt": build_prompt(task, "Some abstract."),
        "completion": gold,
        "prediction": prediction,
    }


def counts(task: str, gold: str, prediction: str, mode: str = "strict") -> tuple[int, int, int]:
    c = score_rows([row(task, gold, prediction)])[mode]["per_task"][task]
    return c["tp"], c["fp"], c["fn"]


# ---- items: bullets, preamble, empty lines ---------------------------------------------------


@pytest.mark.parametrize("bullet", ["-", "*", "•", "1.", "2)", "12.", "  -", "-\t"])
def test_every_bullet_marker_is_removed_with_its_whitespace(bullet: str) -> None:
    assert counts("chemical", "- aspirin", f"{bullet}  aspirin  ") == (1, 0, 0)


def test_no_bullet_is_fine_and_only_one_bullet_is_removed() -> None:
    assert counts("chemical", "- aspirin", "aspirin") == (1, 0, 0)
    # '- - aspirin' loses one marker: the item is '- aspirin', which is not 'aspirin'.
    assert counts("chemical", "- aspirin", "- - aspirin") == (0, 1, 1)
    assert counts("chemical", "- - aspirin", "- - aspirin") == (1, 0, 0)


def test_a_number_needs_its_dot_or_parenthesis_to_be_a_bullet() -> None:
    assert counts("chemical", "- 5-fluorouracil", "1. 5-fluorouracil") == (1, 0, 0)
    assert counts("chemical", "- 5 fluorouracil", "5 fluorouracil") == (1, 0, 0)


def test_a_chatty_preamble_line_is_a_false_positive() -> None:
    prediction = "Here are the chemicals mentioned:\n- aspirin\n- heparin"
    assert counts("chemical", "- aspirin\n- heparin", prediction) == (2, 1, 0)


def test_empty_and_bullet_only_lines_are_skipped() -> None:
    assert counts("chemical", "- aspirin", "\n\n- aspirin\n-\n   \n* \n") == (1, 0, 0)


def test_crlf_line_endings_split_lines() -> None:
    assert counts("disease", "- fever\n- pain", "- fever\r\n- pain\r\n") == (2, 0, 0)


# ---- strict vs normalized --------------------------------------------------------------------


def test_strict_strips_surrounding_whitespace_only() -> None:
    assert counts("disease", "- heart failure", "-   heart failure   ") == (1, 0, 0)
    assert counts("disease", "- heart failure", "- heart  failure") == (0, 1, 1)
    assert counts("disease", "- heart failure", "- Heart failure") == (0, 1, 1)


def test_normalized_folds_case() -> None:
    assert counts("disease", "- Heart Failure", "- HEART FAILURE", "normalized") == (1, 0, 0)
    assert counts("chemical", "- Straße", "- STRASSE", "normalized") == (1, 0, 0)  # case-fold


def test_normalized_collapses_whitespace() -> None:
    assert counts("disease", "- heart failure", "- heart \t  failure", "normalized") == (1, 0, 0)
    assert counts("disease", "- heart failure", "- heart\u00a0failure", "normalized") == (1, 0, 0)


@pytest.mark.parametrize(
    "dash", ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212"]
)
def test_normalized_maps_every_dash_variant(dash: str) -> None:
    assert counts("chemical", "- 5-FU", f"- 5{dash}FU", "normalized") == (1, 0, 0)
    assert counts("chemical", "- 5-FU", f"- 5{dash}FU", "strict") == (0, 1, 1)


def test_normalized_applies_nfkc() -> None:
    # Fullwidth letters and the 'fi' ligature are NFKC-equivalent to plain ASCII.
    assert counts("chemical", "- ＡＴＰ", "- ATP", "normalized") == (1, 0, 0)
    assert counts("chemical", "- ﬁbrin", "- fibrin", "normalized") == (1, 0, 0)


@pytest.mark.parametrize("tail", [".", ",", ";", ":", ".;", " ."])
def test_normalized_strips_trailing_punctuation(tail: str) -> None:
    assert counts("disease", "- seizures", f"- seizures{tail}", "normalized") == (1, 0, 0)
    assert counts("disease", "- seizures", f"- seizures{tail}", "strict") == (0, 1, 1)


def test_normalized_keeps_leading_and_inner_punctuation() -> None:
    assert counts("chemical", "- 1,2-diol", "- 1.2-diol", "normalized") == (0, 1, 1)
    assert counts("chemical", "- (S)-x", "- S)-x", "normalized") == (0, 1, 1)


# ---- sets: duplicates collapse, per example ---------------------------------------------------


def test_duplicates_collapse_within_an_example() -> None:
    assert counts("chemical", "- a\n- a\n- b", "- a\n- a\n- a") == (1, 0, 1)
    # Case variants are different strict items but one normalized item.
    assert counts("chemical", "- Naloxone\n- naloxone", "- naloxone") == (1, 0, 1)
    assert counts("chemical", "- Naloxone\n- naloxone", "- naloxone", "normalized") == (1, 0, 0)


def test_sets_are_per_example_and_counts_sum_over_rows() -> None:
    rows = [row("chemical", "- a", "- a"), row("chemical", "- a", "- a\n- b")]
    c = score_rows(rows)["strict"]["per_task"]["chemical"]
    assert (c["tp"], c["fp"], c["fn"]) == (2, 1, 0)


# ---- relations -------------------------------------------------------------------------------


def test_relation_keywords_are_case_insensitive_arguments_are_not() -> None:
    gold = "- Chemical cocaine influences disease seizures"
    assert counts("relation", gold, "- CHEMICAL cocaine INFLUENCES Disease seizures") == (1, 0, 0)
    assert counts("relation", gold, "- chemical Cocaine influences disease seizures") == (0, 1, 1)
    assert counts(
        "relation", gold, "- chemical Cocaine influences disease Seizures.", "normalized"
    ) == (1, 0, 0)


def test_relation_pairs_normalize_both_sides() -> None:
    gold = "- Chemical 5-FU influences disease heart   failure"
    pred = "- chemical 5\u2013fu influences disease Heart Failure;"
    assert counts("relation", gold, pred, "normalized") == (1, 0, 0)


def test_relation_chemical_is_the_shortest_match() -> None:
    # c = 'a', d = 'b influences disease c' (not c = 'a influences disease b', d = 'c').
    gold = "- Chemical a influences disease b influences disease c"
    assert counts("relation", gold, gold) == (1, 0, 0)
    other_split = "- Chemical a influences disease b\n"
    assert counts("relation", gold, other_split) == (0, 1, 1)
    result = score_rows([row("relation", gold, "")])
    assert result["format_errors"]["gold"] == 0


def test_relation_pair_is_compared_not_the_line() -> None:
    # The same pair written with extra spaces around the arguments is the same pair (strict).
    gold = "- Chemical lithium influences disease tremor"
    assert counts("relation", gold, "1.  Chemical  lithium influences disease tremor ") == (1, 0, 0)


def test_unparseable_relation_lines_never_match_and_are_format_errors() -> None:
    gold = "- Chemical lithium influences disease tremor"
    pred = "- lithium -> tremor\n- Chemical lithium influences disease tremor\n- lithium -> tremor"
    assert counts("relation", gold, pred) == (1, 1, 0)  # the two identical bad lines collapse
    errors = score_rows([row("relation", gold, pred)])["format_errors"]
    assert errors["prediction"] == 2 and errors["prediction_lines"] == 3
    assert errors["gold"] == 0 and errors["gold_lines"] == 1


def test_an_unparseable_gold_line_cannot_be_matched_even_by_itself() -> None:
    gold = "- lithium causes tremor"
    for mode in ("strict", "normalized"):
        assert counts("relation", gold, gold, mode) == (0, 1, 1)
    assert score_rows([row("relation", gold, gold)])["format_errors"]["gold"] == 1


@pytest.mark.parametrize(
    "line",
    [
        "Chemical lithium influences tremor",
        "Chemical lithium influences disease",
        "Chemicals lithium influences disease tremor",
        "The chemical lithium influences disease tremor",
    ],
)
def test_lines_off_the_template_are_unparseable(line: str) -> None:
    gold = "- Chemical lithium influences disease tremor"
    for mode in ("strict", "normalized"):
        assert counts("relation", gold, f"- {line}", mode) == (0, 1, 1)
        assert score_rows([row("relation", gold, line)])[mode]["format_errors"]["prediction"] == 1
    assert score_rows([row("relation", gold, line)])["format_errors"]["prediction"] == 1


@pytest.mark.parametrize(
    "line",
    [
        "Chemical lithium influences  disease tremor",
        "Chemical  lithium  influences  disease  tremor",
        "Chemical lithium\tinfluences disease tremor",
        "Chemical lithium influences\u00a0disease tremor",
    ],
)
def test_whitespace_runs_parse_in_normalized_mode_only(line: str) -> None:
    gold = "- Chemical lithium influences disease tremor"
    assert counts("relation", gold, f"- {line}", "strict") == (0, 1, 1)
    assert counts("relation", gold, f"- {line}", "normalized") == (1, 0, 0)
    result = score_rows([row("relation", gold, line)])
    assert result["strict"]["format_errors"]["prediction"] == 1
    assert result["normalized"]["format_errors"]["prediction"] == 0
    assert result["format_errors"] == result["strict"]["format_errors"]  # the template's rule


def test_entity_lines_are_never_format_errors() -> None:
    errors = score_rows([row("chemical", "- a", "garbage!!\n- a")])["format_errors"]
    assert errors["prediction"] == 0 and errors["prediction_lines"] == 0


# ---- empties, zero division ------------------------------------------------------------------


def test_empty_gold_and_empty_prediction_give_zeros() -> None:
    result = score_rows([row("chemical", "- ", ""), row("relation", "", "\n\n")])
    for mode in ("strict", "normalized"):
        for task in ("chemical", "disease", "relation"):
            assert result[mode]["per_task"][task] == {
                "precision": 0.0,
                "recall": 0.0,
                "f1": 0.0,
                "tp": 0,
                "fp": 0,
                "fn": 0,
            }
        assert result[mode]["macro_f1"] == 0.0


def test_empty_prediction_is_all_false_negatives() -> None:
    c = score_rows([row("disease", "- a\n- b", "")])["strict"]["per_task"]["disease"]
    assert (c["precision"], c["recall"], c["f1"], c["fn"]) == (0.0, 0.0, 0.0, 2)


def test_empty_gold_makes_every_prediction_a_false_positive() -> None:
    c = score_rows([row("disease", "- ", "- a\n- b")])["strict"]["per_task"]["disease"]
    assert (c["precision"], c["recall"], c["f1"], c["fp"]) == (0.0, 0.0, 0.0, 2)


# ---- arithmetic: per task, micro, macro ------------------------------------------------------


def test_micro_and_macro_on_a_hand_computed_example() -> None:
    rows = [
        # chemical: tp 3, fp 1, fn 0 -> P 3/4, R 1, F1 6/7
        row("chemical", "- a\n- b\n- c", "- a\n- b\n- c\n- d"),
        # disease: tp 1, fp 1, fn 3 -> P 1/2, R 1/4, F1 1/3
        row("disease", "- w\n- x\n- y\n- z", "- w\n- q"),
        # relation: tp 0, fp 1 (unparseable), fn 1 -> all 0
        row("relation", "- Chemical a influences disease w", "- a causes w"),
    ]
    result = score_rows(rows)["strict"]
    chem, dis, rel = (result["per_task"][t] for t in ("chemical", "disease", "relation"))
    assert chem == pytest.approx(
        {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "tp": 3, "fp": 1, "fn": 0}
    )
    assert dis == pytest.approx(
        {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "tp": 1, "fp": 1, "fn": 3}
    )
    assert rel == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 1}
    # micro: tp 4, fp 3, fn 4 -> P 4/7, R 1/2, F1 = 2*(4/7)(1/2)/(4/7+1/2) = 8/15
    assert result["micro"] == pytest.approx(
        {"precision": 4 / 7, "recall": 0.5, "f1": 8 / 15, "tp": 4, "fp": 3, "fn": 4}
    )
    # macro: mean of the three F1s, a task with F1 0 included
    assert result["macro_f1"] == pytest.approx((6 / 7 + 1 / 3 + 0) / 3)


def test_output_shape() -> None:
    result = score_rows([row("chemical", "- a", "- a")])
    assert {"strict", "normalized", "format_errors"} <= set(result)
    for mode in ("strict", "normalized"):
        assert set(result[mode]) == {
            "per_task",
            "micro",
            "macro_f1",
            "macro_tasks",
            "format_errors",
        }
        assert set(result[mode]["per_task"]) == {"chemical", "disease", "relation"}
        assert set(result[mode]["micro"]) == {"precision", "recall", "f1", "tp", "fp", "fn"}


def test_gold_is_scored_as_given() -> None:
    # The real file's quirk: a relation with a 'None' argument is an ordinary pair.
    gold = "- Chemical None influences disease pain"
    assert counts("relation", gold, gold) == (1, 0, 0)


# ---- bad input -------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(row("chemical", "- a", "- a"))
    cases = {
        "not json": ("{oops", "not valid JSON"),
        "no prediction": (
            json.dumps({"prompt": row("chemical", "", "")["prompt"], "completion": "- a"}),
            "missing field 'prediction'",
        ),
        "null prediction": (
            json.dumps(row("chemical", "- a", "") | {"prediction": None}),
            "'prediction' must be a string",
        ),
        "unknown task": (
            json.dumps({"prompt": "Summarise this.", "completion": "", "prediction": ""}),
            "none of the known tasks",
        ),
        "a list": ("[1, 2]", "expected a JSON object"),
    }
    for name, (bad, message) in cases.items():
        path = write_lines(tmp_path / f"{name}.jsonl", [good, "", bad])
        with pytest.raises(InputError, match=message) as info:
            score_file(path)
        assert f"{path}:3:" in str(info.value), name


def test_cli_prints_and_writes_metrics(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(row("disease", "- a\n- b", "- a"))])
    out = tmp_path / "m.json"
    done = subprocess.run(
        [sys.executable, "-m", "eval", "score", str(path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == json.loads(out.read_text()) == score_file(path)
    assert json.loads(out.read_text())["strict"]["per_task"]["disease"]["recall"] == 0.5


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", ["{oops"])
    done = subprocess.run(
        [sys.executable, "-m", "eval", "score", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"{path}:1: not valid JSON" in done.stderr and "Traceback" not in done.stderr


def run_score(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eval", "score", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_cli_bad_bytes_deep_nesting_and_directory_out_are_one_line_errors(
    tmp_path: Path,
) -> None:
    good = json.dumps(row("chemical", "- a", "- a"))
    latin1 = tmp_path / "latin1.jsonl"
    # Latin-1 bytes for "caf\u00e9" on line 2: 0xe9 is no UTF-8 here.
    latin1.write_bytes(good.encode() + b"\n" + good.encode().replace(b"- a", b"- caf\xe9") + b"\n")
    deep = write_lines(tmp_path / "deep.jsonl", [good, "[" * 100_000 + "]" * 100_000])
    ok = write_lines(tmp_path / "ok.jsonl", [good])
    cases = [
        ((latin1,), f"{latin1}:2: not UTF-8 (byte 0xe9"),
        ((deep,), f"{deep}:2: JSON nested too deeply"),
        ((ok, "--out", tmp_path), f"--out {tmp_path}: is a directory"),
    ]
    for args, message in cases:
        done = run_score(*args)
        assert done.returncode == 2, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not done.stdout  # nothing printed as if it had worked


def test_empty_file_is_reported_not_scored(tmp_path: Path) -> None:
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(InputError, match="no rows to score"):
        score_file(empty)
    done = run_score(empty)
    assert done.returncode == 2 and f"{empty}: no rows to score" in done.stderr
    with pytest.raises(InputError, match="no rows"):
        score_rows([])


def test_a_task_without_rows_is_left_out_of_the_macro_average(tmp_path: Path) -> None:
    rows = [row("chemical", "- a\n- b", "- a"), row("disease", "- x", "- x")]
    result = score_rows(rows)
    for mode in ("strict", "normalized"):
        assert result[mode]["macro_tasks"] == ["chemical", "disease"]
        assert result[mode]["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert result["rows"] == {"chemical": 1, "disease": 1, "relation": 0}
    path = write_lines(tmp_path / "two.jsonl", [json.dumps(r) for r in rows])
    done = run_score(path)
    assert done.returncode == 0
    assert "no relation rows; relation is left out of macro F1" in done.stderr


def test_cli_out_is_written_atomically(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(row("disease", "- a", "- a"))])
    out = tmp_path / "deeper" / "m.json"
    assert run_score(path, "--out", out).returncode == 0
    assert json.loads(out.read_text())["rows"]["disease"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["m.json"]  # no temporary left behind
