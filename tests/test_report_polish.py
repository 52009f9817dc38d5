"""What the reports tell a reader: the card's task type, the raw-prediction note, a legend on each
f1.png panel, and compare.png carrying compare.md's tiny-model and partial-run notes. Fast: made
from scored fake predictions, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_jsonl

from eval.compare import write_compare
from eval.report import render_report, write_plot
from eval.score import score_rows
from training.model_card import card_metadata


@pytest.fixture
def test_rows(processed_sample: Path) -> list[dict]:
    return read_jsonl(processed_sample / "test.jsonl")


def metrics_for(rows: list[dict], predictions: list[dict], **extra) -> dict:
    metrics = score_rows(predictions)
    metrics.update(
        kind="fine-tuned", recipe="llama3b-qlora", run=None, model="org/model", adapter=None,
        split_file="test.jsonl", split_sha256="ab" * 32, rows_evaluated=len(predictions),
        rows_in_split=len(rows), backend="hf", backend_reason="test", device="cpu",
        max_new_tokens=16, hit_max_new_tokens=1,
        timing={"seconds": 1.0, "rows_per_second": 1.0, "generated_tokens": 10},
    )  # fmt: skip
    metrics.update(extra)
    return metrics


def predictions_of(rows: list[dict]) -> list[dict]:
    """Wrong answers: one cut off at max_new_tokens, the rest ended their turn."""
    return [
        {**row, "prediction": "- x", "finish_reason": "length" if i == 0 else "stop"}
        for i, row in enumerate(rows)
    ]


def test_card_says_text_generation_for_a_generative_adapter(test_rows):
    metrics = metrics_for(test_rows, predictions_of(test_rows))
    meta = card_metadata({"base_model": "org/model"}, {}, Path("runs/x"), metrics, None)
    assert meta["pipeline_tag"] == "text-generation"
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "text-generation"
    assert "token-classification" not in json.dumps(meta)


def test_raw_prediction_says_how_the_answer_ended(test_rows):
    predictions = predictions_of(test_rows)
    report = render_report(metrics_for(test_rows, predictions), predictions)
    assert "- Raw prediction (cut off at max_new_tokens): `- x`" in report
    assert "- Raw prediction (ended its turn): `- x`" in report
    assert "Raw prediction (length)" not in report and "Raw prediction (stop)" not in report
    assert "how it ended: it ended its turn, or was cut off at max_new_tokens" in report


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib figure saved during the test (still open to inspect)."""
    from matplotlib.figure import Figure

    saved = []
    real_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def test_f1_plot_has_a_legend_on_both_panels(test_rows, tmp_path, saved_figures):
    predictions = predictions_of(test_rows)
    write_plot(tmp_path, metrics_for(test_rows, predictions[:3]))
    (figure,) = saved_figures
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title().split()[0] for axis in panels] == ["normalized", "strict"]
    assert all(axis.get_legend() is not None for axis in panels)
    assert "partial: first 3 of 6 rows" in figure._suptitle.get_text()


def test_compare_png_carries_the_notes_of_compare_md(test_rows, tmp_path, saved_figures):
    predictions = predictions_of(test_rows)
    runs = tmp_path / "runs"
    cases = {
        "llama3b-qlora-20261201_100000": ("eval", metrics_for(test_rows, predictions)),
        "llama3b-qlora-20261201_110000": ("eval-limit3", metrics_for(test_rows, predictions[:3])),
        "tiny-cpu-20261201_120000": (
            "eval",
            metrics_for(test_rows, predictions, recipe="tiny-cpu"),
        ),
    }
    for name, (folder, metrics) in cases.items():
        (runs / name / folder).mkdir(parents=True)
        (runs / name / folder / "metrics.json").write_text(json.dumps(metrics))
    table, _ = write_compare(runs)
    text = table.read_text()
    assert "| llama3b-qlora-20261201_110000 |" in text and "| 3 of 6 (partial) |" in text
    assert "| tiny-cpu-20261201_120000 ⚠ tiny |" in text
    (figure,) = saved_figures
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == [
        "llama3b-qlora-20261201_100000",
        "llama3b-qlora-20261201_110000 (3 of 6 rows)",
        "tiny-cpu-20261201_120000 ⚠ tiny",
    ]
    notes = " ".join(t.get_text() for t in figure.texts)
    assert "⚠ tiny = random tiny CPU model" in notes and "partial evaluation (--limit)" in notes


def test_a_full_eval_wins_over_a_partial_one_in_compare(test_rows, tmp_path):
    predictions = predictions_of(test_rows)
    run = tmp_path / "runs" / "llama3b-qlora-20261201_100000"
    for folder, metrics in (
        ("eval", metrics_for(test_rows, predictions)),
        ("eval-limit2", metrics_for(test_rows, predictions[:2])),
    ):
        (run / folder).mkdir(parents=True)
        (run / folder / "metrics.json").write_text(json.dumps(metrics))
    table, _ = write_compare(tmp_path / "runs")
    assert "| 6 |" in table.read_text() and "partial" not in table.read_text().split("\n\n")[-1]
