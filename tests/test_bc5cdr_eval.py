"""`python -m eval bc5cdr` end to end: matching, export format, both engines, errors.

On the repo's synthetic sample everywhere; on the BC5CDR Development set (gold as predictions and
deterministically perturbed predictions, both engines) where ../shared is present.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

from eval.bc5cdr_export import Predicted, document_rows, occurrences
from eval.ground import Lexicon
from eval.official import java_available, load_keys
from preprocessing.bc5cdr import Document, read_pubtator
from preprocessing.task import format_entities, format_relations, parse_items, parse_relation

REPO = conftest.REPO
SAMPLE = REPO / "data" / "sample"
SAMPLE_PUBTATOR = SAMPLE / "sample.PubTator.txt"
BC5CDR = conftest.SHARED_DATA / "bc5cdr"
KIT = BC5CDR / "BC5CDR_Evaluation-0.0.3.zip"
NAMES = ("relation CID", "id Chemical", "id Disease", "mention Chemical", "mention Disease")


def bc5cdr(*args: object) -> subprocess.CompletedProcess:
    """`python -m eval bc5cdr ARGS`, with the shared official kit unless ARGS name one."""
    kit = [] if "--kit" in args else ["--kit", KIT]
    return subprocess.run(
        [sys.executable, "-m", "eval", "bc5cdr", *map(str, [*args, *kit])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def with_predictions(rows: list[dict], path: Path, change=None) -> Path:
    """rows with prediction = completion (or change(index, row) where given), as JSONL."""
    with open(path, "w", encoding="utf-8") as out:
        for index, row in enumerate(rows):
            prediction = row["completion"] if change is None else change(index, row)
            out.write(json.dumps(row | {"prediction": prediction}) + "\n")
    return path


def counts(block: dict) -> dict[str, tuple[int, int, int]]:
    return {name: (s["tp"], s["fp"], s["fn"]) for name, s in block["measures"].items()}


# ---- export rules ---------------------------------------------------------------------------


def test_occurrences_are_case_insensitive_and_word_bounded() -> None:
    text = "Lithium and lithium carbonate; not lithiumX or Xlithium; LITHIUM."
    assert occurrences(text, "lithium") == [(0, 7), (12, 19), (57, 64)]
    assert occurrences(text, "  ") == []


def test_document_rows_longest_span_wins_and_cids_use_first_ids() -> None:
    doc = Document("7", "Drug X and acute kidney injury.", "Acute kidney injury followed drug X.")
    lexicon = Lexicon()
    lexicon.add("Chemical", "drug X", "D1")
    lexicon.add("Disease", "acute kidney injury", "D2|D3")
    lexicon.add("Disease", "kidney injury", "D4")
    predicted = Predicted()
    predicted.names["Chemical"] = ["drug X"]
    predicted.names["Disease"] = ["kidney injury", "acute kidney injury"]
    predicted.pairs = [("drug X", "acute kidney injury"), ("drug X", "unknown thing")]
    rows = document_rows(doc, predicted, lexicon)
    assert rows == [
        "7|t|Drug X and acute kidney injury.",
        "7|a|Acute kidney injury followed drug X.",
        "7\t0\t6\tDrug X\tChemical\tD1",
        "7\t11\t30\tacute kidney injury\tDisease\tD2|D3",
        "7\t32\t51\tAcute kidney injury\tDisease\tD2|D3",
        "7\t61\t67\tdrug X\tChemical\tD1",
        "7\tCID\tD1\tD2",  # 'unknown thing' grounds to -1: no CID row
    ]
    offsets = [row.split("\t") for row in rows[2:-1]]
    text = doc.title + " " + doc.abstract
    assert all(text[int(s) : int(e)] == shown for _, s, e, shown, *_ in offsets)


def test_relation_arguments_are_mention_names_but_none_is_not() -> None:
    doc = Document("8", "Valproate hepatotoxicity.", "None of the patients had liver failure.")
    lexicon = Lexicon()
    lexicon.add("Chemical", "valproate", "D1")
    predicted = Predicted()
    predicted.pairs = [("Valproate", "None")]
    rows = document_rows(doc, predicted, lexicon)
    assert rows[2:] == ["8\t0\t9\tValproate\tChemical\tD1"]


# ---- the command on the synthetic sample ----------------------------------------------------


@pytest.fixture(scope="module")
def sample_rows() -> list[dict]:
    return conftest.read_jsonl(SAMPLE / "sample_instruct.jsonl")


def test_sample_gold_as_predictions(sample_rows: list[dict], tmp_path: Path) -> None:
    predictions = with_predictions(sample_rows, tmp_path / "p.jsonl")
    out = tmp_path / "out"
    done = bc5cdr(predictions, "--pubtator", SAMPLE_PUBTATOR, "--lexicon-from", SAMPLE_PUBTATOR,
                  "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "bc5cdr.json").read_text())
    assert counts(result["predictions"]) == counts(result["ceiling"])
    assert result["documents"] | {"unmatched_lines": []} == {
        "gold_documents": 20, "scored_documents": 20, "rows": 60, "rows_matched": 60,
        "rows_per_task": {"chemical": 20, "disease": 20, "relation": 20},
        "rows_unmatched": 0, "unmatched_lines": [],
    }  # fmt: skip
    # every gold key is counted once: TP + FN is the gold's own count
    gold = out / "gold.PubTator.txt"
    for name, (tp, _, fn) in counts(result["predictions"]).items():
        evaluation, concept = name.split()
        assert tp + fn == len(load_keys(gold, evaluation, concept)), name
    # the lexicon is the gold itself: ids and relations are near perfect; what is lost is the
    # two CID pairs the recipe writes with a 'None' argument
    assert counts(result["predictions"])["relation CID"] == (36, 0, 2)
    assert counts(result["predictions"])["id Chemical"] == (51, 0, 0)
    exported = (out / "predictions.PubTator.txt").read_text()
    assert exported.count("|t|") == 20 and exported.count("|a|") == 20
    assert "| relation CID" in (out / "bc5cdr.md").read_text()
    if result["predictions"]["jar"] is not None:
        assert result["predictions"]["engines_agree"] is True


def _perturb(index: int, row: dict) -> str:
    """Deterministic damage: drop every third item, rename every fifth (upper case for entities,
    the disease swapped for the next pair's in relations), add a wrong item every fourth row."""
    items = parse_items(row["completion"])
    kept = [item for i, item in enumerate(items) if i % 3 != 2]
    if "influences" not in row["prompt"][-30:]:
        kept = [item.upper() if i % 5 == 4 else item for i, item in enumerate(kept)]
        if index % 4 == 0:
            kept.append("rats")
        return format_entities(kept)
    pairs = [pair for pair in map(parse_relation, kept) if pair]
    pairs = [(c, pairs[(i + 1) % len(pairs)][1]) if i % 5 == 4 else (c, d)
             for i, (c, d) in enumerate(pairs)]  # fmt: skip
    if index % 4 == 0 and pairs:
        pairs.append((pairs[0][0], "hypertension"))
    return format_relations(pairs)


def test_sample_perturbed_predictions_score_lower(sample_rows: list[dict], tmp_path: Path) -> None:
    predictions = with_predictions(sample_rows, tmp_path / "p.jsonl", _perturb)
    out = tmp_path / "out"
    done = bc5cdr(predictions, "--pubtator", SAMPLE_PUBTATOR, "--lexicon-from", SAMPLE_PUBTATOR,
                  "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "bc5cdr.json").read_text())
    damaged, ceiling = counts(result["predictions"]), counts(result["ceiling"])
    for name in NAMES:
        assert damaged[name][0] < ceiling[name][0], name  # fewer true positives everywhere
    assert damaged["relation CID"][1] > 0  # swapped and added pairs are false positives


def test_unmatched_rows_are_counted_and_duplicates_refused(
    sample_rows: list[dict], tmp_path: Path
) -> None:
    stranger = sample_rows[0] | {"prompt": sample_rows[0]["prompt"].replace("rats", "mice")}
    predictions = with_predictions([*sample_rows[:3], stranger], tmp_path / "p.jsonl")
    out = tmp_path / "out"
    done = bc5cdr(predictions, "--pubtator", SAMPLE_PUBTATOR, "--lexicon-from", SAMPLE_PUBTATOR,
                  "--out", out, "--no-jar")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "bc5cdr.json").read_text())
    assert result["documents"]["rows_unmatched"] == 1
    assert result["documents"]["unmatched_lines"] == [4]
    assert result["documents"]["scored_documents"] == 2  # rows 1-2: doc 1; row 3: doc 2
    assert result["predictions"]["jar_status"] == "not run (--no-jar)"
    assert (out / "gold.PubTator.txt").read_text().count("|t|") == 2
    twice = with_predictions([sample_rows[0], sample_rows[0]], tmp_path / "twice.jsonl")
    done = bc5cdr(twice, "--pubtator", SAMPLE_PUBTATOR, "--lexicon-from", SAMPLE_PUBTATOR,
                  "--out", out)  # fmt: skip
    assert done.returncode == 2
    assert f"{twice}:2: a second chemical row for PMID 90000001 (the first is line 1)" in (
        done.stderr
    )


@pytest.mark.parametrize(
    "case", ["empty", "no match", "bad gold", "gold bytes", "out is a file", "bad json"]
)
def test_bad_input_is_a_one_line_error(case: str, sample_rows: list[dict], tmp_path: Path) -> None:
    predictions = with_predictions(sample_rows[:3], tmp_path / "p.jsonl")
    gold, out = SAMPLE_PUBTATOR, tmp_path / "out"
    expected = {
        "empty": "no rows (the file is empty)",
        "no match": "none of its 3 rows has the abstract of a gold document",
        "bad gold": "gold.txt:2:",
        "gold bytes": "gold.txt:2: not UTF-8 (byte 0xe9)",
        "out is a file": "exists and is not a directory",
        "bad json": "p.jsonl:2: not valid JSON",
    }[case]
    if case == "empty":
        predictions.write_text("\n", encoding="utf-8")
    elif case == "no match":
        gold = tmp_path / "gold.txt"
        gold.write_text("1|t|T\n1|a|Another abstract.\n", encoding="utf-8")
    elif case == "bad gold":
        gold = tmp_path / "gold.txt"
        gold.write_text("1|t|T\n1\tbroken\n", encoding="utf-8")
    elif case == "gold bytes":
        gold = tmp_path / "gold.txt"
        gold.write_bytes(b"1|t|T\n1|a|caf\xe9\n")
    elif case == "out is a file":
        out.write_text("", encoding="utf-8")
    else:
        lines = predictions.read_text().splitlines()
        predictions.write_text(lines[0] + "\n{oops\n", encoding="utf-8")
    done = bc5cdr(predictions, "--pubtator", gold, "--lexicon-from", SAMPLE_PUBTATOR, "--out", out)
    assert done.returncode == 2, done.stdout
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# ---- the real Development set (../shared) ---------------------------------------------------


@pytest.fixture(scope="module")
def dev_rows() -> list[dict]:
    if not (BC5CDR / "CDR_DevelopmentSet.PubTator.txt").is_file():
        pytest.skip(f"{BC5CDR} not present (only on the project's own machines)")
    from preprocessing.bc5cdr import build_rows

    return build_rows(read_pubtator(BC5CDR / "CDR_DevelopmentSet.PubTator.txt"))


@pytest.mark.parametrize("perturbed", [False, True], ids=["gold", "perturbed"])
def test_development_set_both_engines_agree(
    dev_rows: list[dict], perturbed: bool, tmp_path: Path
) -> None:
    if not (KIT.is_file() and java_available()):
        pytest.skip("the official kit or java is missing")
    predictions = with_predictions(dev_rows, tmp_path / "p.jsonl", _perturb if perturbed else None)
    out = tmp_path / "out"
    dev, train = BC5CDR / "CDR_DevelopmentSet.PubTator.txt", BC5CDR / "CDR_TrainingSet.PubTator.txt"
    done = bc5cdr(predictions, "--pubtator", dev, "--lexicon-from", train, "--out", out)
    assert done.returncode == 0, done.stderr  # exit 1 if the engines disagree
    result = json.loads((out / "bc5cdr.json").read_text())
    for block in (result["predictions"], result["ceiling"]):
        assert block["engine"] == "jar" and block["engines_agree"] is True
        assert counts({"measures": block["python"]}) == counts({"measures": block["jar"]})
    ceiling = result["ceiling"]["measures"]
    # the grounding ceiling with a Training-only lexicon (measured; see README)
    assert ceiling["relation CID"]["f1"] > 0.58
    assert ceiling["id Chemical"]["f1"] > 0.80 and ceiling["id Disease"]["f1"] > 0.75
    assert ceiling["mention Chemical"]["f1"] > 0.99 and ceiling["mention Disease"]["f1"] > 0.98
    if perturbed:
        assert (
            result["predictions"]["measures"]["relation CID"]["f1"] < ceiling["relation CID"]["f1"]
        )


# ---- a run's outputs: report.md, model card, make compare ----------------------------------


@pytest.mark.slow
def test_a_runs_official_scores_reach_its_report_card_and_compare(
    tiny_run: Path, tmp_path: Path
) -> None:
    import shutil

    import yaml

    from eval.__main__ import main as eval_main
    from eval.compare import collect_runs, render_compare

    skip = shutil.ignore_patterns("checkpoint-*", "_prepared", "eval", "runs")
    run = Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name, ignore=skip))
    generated = ["generate", "--run", str(run), "--limit", "6", "--backend", "hf"]
    assert eval_main([*generated, "--max-new-tokens", "12", "--batch-size", "2"]) == 0
    done = bc5cdr(run / "eval" / "predictions.jsonl", "--pubtator", SAMPLE_PUBTATOR,
                  "--lexicon-from", SAMPLE_PUBTATOR, "--out", run / "eval" / "bc5cdr",
                  "--no-jar")  # fmt: skip
    assert done.returncode == 0, done.stderr
    official = json.loads((run / "eval" / "bc5cdr" / "bc5cdr.json").read_text())
    report = (run / "eval" / "report.md").read_text()
    assert "## Official BC5CDR measures" in report
    cid = official["predictions"]["measures"]["relation CID"]
    assert f"| relation CID | {cid['f1']:.3f} (" in report
    meta = yaml.safe_load((run / "README.md").read_text().split("---\n")[1])
    results = meta["model-index"][0]["results"]
    assert len(results) == 2
    found = {entry["name"]: entry["value"] for entry in results[1]["metrics"]}
    assert found["relation CID f1 (official)"] == cid["f1"] and len(found) == 15
    table = render_compare(collect_runs(run.parent))
    assert "official CID / chem. id / dis. id F1" in table
    assert f"{cid['f1']:.3f} / " in table


def test_engines_that_disagree_stop_the_command() -> None:
    from eval.bc5cdr import DisagreementError, combine
    from eval.score import prf

    python, jar = {"relation CID": prf(1, 0, 0)}, {"relation CID": prf(0, 1, 1)}
    with pytest.raises(DisagreementError, match=r"disagree on relation CID: jar \[\(0, 1, 1\)\]"):
        combine(Path("x.PubTator.txt"), python, jar, "ran")
    assert combine(Path("x"), python, dict(python), "ran")["engines_agree"] is True
    assert combine(Path("x"), python, None, "not run")["engine"] == "python"
