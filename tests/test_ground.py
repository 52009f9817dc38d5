"""Grounding names to MeSH ids: variant keys, the lexicon's rules, abbreviations, CTD files.

Everything here runs on the repo's synthetic sample (data/sample) and on tiny texts written in
the tests; the real-corpus ceiling is measured in test_bc5cdr_eval.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import conftest
import pytest

from eval.ctd import CTDError, read_ctd
from eval.ground import Lexicon, abbreviations, ground, read_lexicon, variant_keys

SAMPLE = conftest.REPO / "data" / "sample"
PUBTATOR = SAMPLE / "sample.PubTator.txt"
CTD_CHEMICALS = SAMPLE / "CTD_chemicals.sample.tsv"
CTD_DISEASES = SAMPLE / "CTD_diseases.sample.tsv"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return read_lexicon([PUBTATOR])


# ---- variant keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("Acute kidney injury", "acute  KIDNEY injury"),  # case, whitespace
        ("N-acetylcysteine", "N acetylcysteine"),  # hyphen as a space
        ("N-acetylcysteine", "N\u2010acetylcysteine"),  # Unicode hyphen
        ("TNF-alpha", "TNF-\u03b1"),  # Greek letter spelled out
        ("Parkinson's disease", "Parkinson disease"),  # possessive
        ("tardive dyskinesia", "tardive dyskinesias"),  # plural
        ("dyskinesia", "dyskinetic"),  # adjective
        ("ischemia", "ischemic"),
        ("anemia", "anaemia"),  # British spelling
        ("edema", "oedema"),
        ("torsade de pointes", "torsades de pointes"),
    ],
)
def test_variants_meet_at_some_level(a: str, b: str) -> None:
    assert set(variant_keys(a)) & set(variant_keys(b))


@pytest.mark.parametrize(
    "a, b",
    [
        ("hypertension", "hypotension"),
        ("analysis", "analyse"),  # 'is' endings are kept
        ("5-HT1A", "5-HT2A"),
        ("lithium", "lithium carbonate"),
    ],
)
def test_different_names_stay_apart(a: str, b: str) -> None:
    assert not set(variant_keys(a)) & set(variant_keys(b))


# ---- the lexicon ---------------------------------------------------------------------------


def test_training_names_ground_with_their_variants(lexicon: Lexicon) -> None:
    assert ground(lexicon, "Chemical", "Cisplatin") == "D900101"
    assert ground(lexicon, "Chemical", "CISPLATIN") == "D900101"
    assert ground(lexicon, "Disease", "Tardive  Dyskinesias") == "D910005"
    assert ground(lexicon, "Chemical", "N\u2010acetylcysteine") == "D900120"


def test_composite_and_unnormalised_mentions_keep_their_ids(lexicon: Lexicon) -> None:
    assert ground(lexicon, "Disease", "oto- and nephrotoxicity") == "D910012|D910001"
    assert ground(lexicon, "Chemical", "MTX polyglutamates") == "-1"


def test_unknown_names_and_wrong_types_are_ungrounded(lexicon: Lexicon) -> None:
    assert ground(lexicon, "Chemical", "unobtainium") == "-1"
    assert ground(lexicon, "Disease", "cisplatin") == "-1"  # a chemical, asked as a disease
    assert ground(lexicon, "Chemical", "") == "-1"


def test_the_most_frequent_id_wins_then_the_smaller_id() -> None:
    lexicon = Lexicon()
    for ids in ("D2", "D2", "D1", "-1"):
        lexicon.add("Disease", "fits", ids)
    assert ground(lexicon, "Disease", "fits") == "D2"
    lexicon.add("Disease", "fits", "D1")
    assert ground(lexicon, "Disease", "fits") == "D1"  # a tie: deterministic


def test_a_stricter_level_beats_a_more_frequent_looser_one() -> None:
    lexicon = Lexicon()
    lexicon.add("Chemical", "Ca", "D-calcium")
    for _ in range(5):
        lexicon.add("Chemical", "CA", "D-cancer-antigen")
    assert ground(lexicon, "Chemical", "Ca") == "D-calcium"
    assert ground(lexicon, "Chemical", "CA") == "D-cancer-antigen"
    assert ground(lexicon, "Chemical", "ca") == "D-cancer-antigen"  # case-folded level: counts


# ---- abbreviations -------------------------------------------------------------------------


def test_abbreviations_defined_in_the_text() -> None:
    text = (
        "Rats given puromycin aminonucleoside (PAN) developed nephrosis. Tumor necrosis "
        "factor-alpha (TNF-alpha) rose, and non-steroidal anti-inflammatory drugs (NSAIDs) "
        "caused acute renal failure (ARF) in 3 (10%) rats (n = 30)."
    )
    assert abbreviations(text) == {
        "PAN": "puromycin aminonucleoside",
        "TNF-alpha": "Tumor necrosis factor-alpha",
        "NSAIDs": "non-steroidal anti-inflammatory drugs",
        "ARF": "acute renal failure",
    }


def test_a_defined_abbreviation_grounds_through_its_long_form() -> None:
    lexicon = Lexicon()
    lexicon.add("Chemical", "puromycin aminonucleoside", "D011692")
    lexicon.add("Chemical", "PAN", "D-something-else")
    defined = abbreviations("Rats given puromycin aminonucleoside (PAN) developed nephrosis.")
    assert ground(lexicon, "Chemical", "PAN", defined) == "D011692"
    assert ground(lexicon, "Chemical", "PAN") == "D-something-else"  # not defined: the lexicon
    # a long form the lexicon does not know falls back to its trailing words, then to the lexicon
    lexicon.add("Disease", "renal failure", "D051437")
    defined = abbreviations("It caused acute renal failure (ARF).")
    assert ground(lexicon, "Disease", "ARF", defined) == "D051437"


# ---- CTD vocabularies ------------------------------------------------------------------------


def test_ctd_files_are_read_mesh_rows_only() -> None:
    chemicals = dict(read_ctd(CTD_CHEMICALS, "Chemical"))
    assert chemicals["D900101"] == ["Cisplatin", "CDDP", "cis-Diamminedichloroplatinum", "Platinol"]
    assert "C900999" in chemicals and all(not i.startswith("CHEBI") for i in chemicals)
    diseases = dict(read_ctd(CTD_DISEASES, "Disease"))
    assert set(diseases) == {"D910001", "D910002", "D910003", "D910004"}  # the OMIM row is not


def test_ctd_synonyms_ground_and_corpus_evidence_outweighs_them() -> None:
    plain = read_lexicon([PUBTATOR])
    both = read_lexicon([PUBTATOR], CTD_CHEMICALS, CTD_DISEASES)
    assert ground(plain, "Chemical", "CDDP") == "-1"
    assert ground(both, "Chemical", "CDDP") == "D900101"
    assert ground(both, "Chemical", "quetiapine") == "C900999"
    assert ground(both, "Disease", "acute renal failure") == "D910002"
    assert ground(both, "Disease", "nephrotoxicity") == "D910001"
    # 'Acetylcysteine' is CTD's name for D900120; the corpus spells it N-acetylcysteine
    assert ground(both, "Chemical", "acetylcysteine") == "D900120"
    lexicon = read_lexicon([], None, CTD_DISEASES)
    for _ in range(2):
        lexicon.add("Disease", "Cardiac Failure", "D-corpus")
    assert ground(lexicon, "Disease", "cardiac failure") == "D-corpus"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("# Fields:\n# Name\tID\nCisplatin\tMESH:D1\n", "no ChemicalName/ChemicalID columns"),
        ("Cisplatin\n", "a row without ChemicalName or ChemicalID"),
    ],
)
def test_bad_ctd_files_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "CTD_chemicals.tsv"
    path.write_text("# a comment\n" + text, encoding="utf-8")
    with pytest.raises(CTDError, match=problem) as info:
        read_ctd(path, "Chemical")
    assert f"{path}:" in str(info.value)


def test_cli_grounds_names(tmp_path: Path) -> None:
    text = tmp_path / "abstract.txt"
    text.write_text("We gave cis-diamminedichloroplatinum (CDP) to rats.", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "eval", "ground", "cisplatin", "CDP", "unobtainium",
         "--type", "Chemical", "--lexicon-from", str(PUBTATOR),
         "--ctd-chemicals", str(CTD_CHEMICALS), "--text", str(text)],
        cwd=conftest.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["cisplatin\tD900101", "CDP\tD900101", "unobtainium\t-1"]
    missing = subprocess.run(
        [sys.executable, "-m", "eval", "ground", "x", "--type", "Chemical",
         "--lexicon-from", str(tmp_path / "nope.txt")],
        cwd=conftest.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "nope.txt" in missing.stderr
