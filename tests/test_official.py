"""The Python twin of the official BC5CDR kit: its rules by hand, then equal to the jar itself.

Hand-computed counts run everywhere; the comparisons with the jar skip without Java or without
the kit in ../shared (the kit's own sample files are read from the zip, never copied here).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import conftest
import pytest

from eval.official import (
    MEASURES,
    OfficialError,
    count,
    jar_scores,
    java_available,
    load_keys,
    measure_name,
    python_scores,
)

KIT = conftest.SHARED_DATA / "bc5cdr" / "BC5CDR_Evaluation-0.0.3.zip"

# Invented documents. Gold: doc 1 has mentions and a CID; doc 2 has mentions, no CID; doc 3 has
# only an unnormalised (-1) disease.
GOLD = """\
1|t|Drug A and liver harm.
1|a|Drug A caused liver harm and fever in rats.
1\t0\t6\tDrug A\tChemical\tD000001
1\t11\t21\tliver harm\tDisease\tD000010
1\t23\t29\tDrug A\tChemical\tD000001
1\t37\t47\tliver harm\tDisease\tD000010
1\t52\t57\tfever\tDisease\tD000011|D000012
1\tCID\tD000001\tD000010

2|t|Drug B.
2|a|Drug B and a rash.
2\t0\t6\tDrug B\tChemical\tMESH:D000002
2\t21\t25\trash\tDisease\tD000013

3|t|Odd.
3|a|Something odd happened.
3\t5\t14\tSomething\tDisease\t-1
"""

# Predictions: the same Drug A twice (duplicates collapse), one wrong span, a composite id split
# differently, a CID on doc 2 (no gold CID there: dropped, not a false positive), ids with and
# without the MESH: prefix, a -1 id (ignored), a title-like text inside a mention row (skipped,
# as the jar skips any line containing '|t|'), trailing tabs and spaces (trimmed).
PRED = """\
1|t|Drug A and liver harm.
1|a|Drug A caused liver harm and fever in rats.
1\t0\t6\tDrug A\tChemical\tMESH:D000001
1\t0\t6\tDrug A\tChemical\tD000001\t\t
1\t11\t20\tliver har\tDisease\tD000010
1\t52\t57\tfever\tDisease\tD000012|-1
1\t37\t47\ta|t|b\tDisease\tD000099
1\tCID\tD000001\tD000010
1\tCID\tMESH:D000001\tD000011
2\t0\t6\tDrug B\tChemical\tD000002   \r
2\t21\t25\trash\tDisease\t-1
2\tCID\tD000002\tD000013
4\t0\t3\tNew\tChemical\tD000005
"""


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gold, pred = tmp_path / "gold.txt", tmp_path / "pred.txt"
    gold.write_text(GOLD, encoding="utf-8")
    pred.write_bytes(PRED.encode("utf-8"))
    return gold, pred


def test_keys_follow_the_jars_reading_rules(files: tuple[Path, Path]) -> None:
    gold, pred = files
    assert load_keys(gold, "id", "Disease") == {
        ("1", "Disease", "MESH:D000010"),
        ("1", "Disease", "MESH:D000011"),
        ("1", "Disease", "MESH:D000012"),
        ("2", "Disease", "MESH:D000013"),
    }  # doc 3's -1 gives no key, so doc 3 has no gold id
    assert load_keys(pred, "id", "Chemical") == {
        ("1", "Chemical", "MESH:D000001"),
        ("2", "Chemical", "MESH:D000002"),
        ("4", "Chemical", "MESH:D000005"),
    }
    assert ("1", 37, 47, "Disease") not in load_keys(pred, "mention", "Disease")  # '|t|' row
    assert load_keys(pred, "relation", "CID") == {
        ("1", "CID", "MESH:D000001", "MESH:D000010"),
        ("1", "CID", "MESH:D000001", "MESH:D000011"),
        ("2", "CID", "MESH:D000002", "MESH:D000013"),
    }


def test_counts_by_hand(files: tuple[Path, Path]) -> None:
    scores = {name: (s["tp"], s["fp"], s["fn"]) for name, s in python_scores(*files).items()}
    assert scores == {
        # doc 2's CID is dropped (doc 2 has no gold CID); doc 1: 1 right, 1 wrong
        "relation CID": (1, 1, 0),
        # doc 4 is not in the gold: dropped
        "id Chemical": (2, 0, 0),
        # ids are per document: the wrong span still names D000010; D000011 is missed (the
        # composite was predicted as D000012|-1); doc 2's -1 names nothing, so D000013 is missed
        "id Disease": (2, 0, 2),
        # doc 1's second Drug A (23, 29) is missed
        "mention Chemical": (2, 0, 1),
        # doc 1: (11, 20) wrong, (52, 57) right; doc 2: (21, 25) right; doc 3: nothing
        "mention Disease": (2, 1, 3),
    }


def test_a_minus_one_in_a_cid_row_is_the_string_null() -> None:
    from eval.official import _keys_of_line

    keys = list(_keys_of_line(["7", "CID", "-1", "D1"], "relation", "CID"))
    assert keys == [("7", "CID", "null", "MESH:D1")]


def test_predictions_on_documents_without_gold_keys_cost_nothing() -> None:
    gold = {("1", "CID", "a", "b")}
    assert count(gold, {("1", "CID", "a", "b"), ("2", "CID", "c", "d")}) == (1, 0, 0)
    assert count(gold, {("1", "CID", "a", "c")}) == (0, 1, 1)
    assert count(set(), {("1", "CID", "a", "b")}) == (0, 0, 0)


def test_a_row_the_jar_cannot_read_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1|t|T\n1\t0\n", encoding="utf-8")
    with pytest.raises(OfficialError, match=f"{bad}:2: not a PubTator row"):
        load_keys(bad, "mention", "Chemical")


# ---- the jar ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kit() -> Path:
    if not KIT.is_file():
        pytest.skip(f"{KIT} not present (only on the project's own machines)")
    if not java_available():
        pytest.skip("java not installed")
    return KIT


def _counts(scores: dict) -> dict:
    return {name: (s["tp"], s["fp"], s["fn"]) for name, s in scores.items()}


def test_the_jar_agrees_on_the_hand_made_files(kit: Path, files: tuple[Path, Path]) -> None:
    (jar,) = jar_scores(kit, *files[:1], [files[1]])
    assert _counts(jar) == _counts(python_scores(*files))
    assert list(jar) == [measure_name(e, c) for e, c in MEASURES]


def test_the_jar_agrees_on_the_kits_own_samples(kit: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(kit) as archive:
        archive.extractall(tmp_path)
    (data,) = tmp_path.glob("*/data")
    gold = data / "gold" / "CDR_sample.gold.PubTator"
    predicted = [data / "test" / "CDR_sample.test.DNER.PubTator", gold]
    predicted.append(data / "test" / "CDR_sample.test.CID.PubTator")
    for path, jar in zip(predicted, jar_scores(kit, gold, predicted), strict=True):
        assert _counts(jar) == _counts(python_scores(gold, path)), path.name
    # the kit's readme: its CID sample scores TP 90, FP 533, FN 33
    assert _counts(python_scores(gold, predicted[2]))["relation CID"] == (90, 533, 33)


def test_a_missing_kit_is_a_clear_error(tmp_path: Path, files: tuple[Path, Path]) -> None:
    if not java_available():
        pytest.skip("java not installed")
    with pytest.raises(OfficialError, match="is not there"):
        jar_scores(tmp_path / "nope.zip", files[0], [files[1]])
