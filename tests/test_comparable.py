"""The comparable setting: test split = exactly the held-out PubTator documents, scored officially.

Runs on the repo's synthetic sample, cut into a 15-document "training" file and a 5-document
"held-out" file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

from preprocessing.bc5cdr import read_pubtator
from preprocessing.comparable import OverlapError, prepare_comparable
from preprocessing.prepare import doc_id_of, is_stale

SAMPLE_PUBTATOR = conftest.REPO / "data" / "sample" / "sample.PubTator.txt"


@pytest.fixture()
def halves(tmp_path: Path) -> tuple[Path, Path]:
    blocks = SAMPLE_PUBTATOR.read_text("utf-8").strip().split("\n\n")
    train, test = tmp_path / "train.PubTator.txt", tmp_path / "test.PubTator.txt"
    train.write_text("\n\n".join(blocks[:15]) + "\n\n", "utf-8")
    test.write_text("\n\n".join(blocks[15:]) + "\n\n", "utf-8")
    return train, test


def test_the_test_split_is_exactly_the_held_out_documents(
    halves: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = halves
    out = tmp_path / "processed"
    manifest = prepare_comparable([train], [test], out, show_progress=False)
    held_out = {doc_id_of(doc.abstract) for doc in read_pubtator(test)}
    split_docs = {}
    for split in ("train", "validation", "test"):
        rows = conftest.read_jsonl(out / f"{split}.jsonl")
        split_docs[split] = {row["doc_id"] for row in rows}
    assert split_docs["test"] == held_out
    assert len(split_docs["train"]) + len(split_docs["validation"]) == 15
    assert split_docs["validation"] and not (split_docs["train"] & held_out)
    assert manifest["rows"]["test"]["total"] == 15
    assert manifest["split"].startswith("named test abstracts")
    assert manifest["comparable"]["test_pmids"] == [doc.pmid for doc in read_pubtator(test)]
    # `make train DATA=<out>.instructions.jsonl PROCESSED=<out>` keeps these splits
    assert not is_stale(out.with_name(f"{out.name}.instructions.jsonl"), out)


def test_a_document_on_both_sides_is_refused(halves: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = halves
    with pytest.raises(OverlapError, match="PMID 90000001 is in"):
        prepare_comparable([train], [train], tmp_path / "out", show_progress=False)


def test_cli_then_official_evaluation_of_the_test_split(
    halves: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = halves
    out = tmp_path / "processed"
    done = subprocess.run(
        [sys.executable, "-m", "preprocessing", "prepare-bc5cdr", "--train", str(train),
         "--test", str(test), "--out", str(out)],
        cwd=conftest.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "5 held-out documents are the test split" in done.stdout
    predictions = tmp_path / "predictions.jsonl"
    rows = conftest.read_jsonl(out / "test.jsonl")
    predictions.write_text(
        "".join(json.dumps(r | {"prediction": r["completion"]}) + "\n" for r in rows), "utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-m", "eval", "bc5cdr", str(predictions), "--pubtator", str(test),
         "--lexicon-from", str(train), "--out", str(tmp_path / "eval"), "--no-jar"],
        cwd=conftest.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "eval" / "bc5cdr.json").read_text())
    assert result["documents"]["scored_documents"] == result["documents"]["gold_documents"] == 5
    assert result["documents"]["rows_unmatched"] == 0
    missing = subprocess.run(
        [sys.executable, "-m", "preprocessing", "prepare-bc5cdr", "--train", str(train),
         "--test", str(tmp_path / "nope.txt"), "--out", str(out)],
        cwd=conftest.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "nope.txt" in missing.stderr
