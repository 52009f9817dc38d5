"""The pipeline learns: the tiny model, trained through the real launcher (`make train`'s path)
on three hand-written abstracts until it has memorised them, then evaluated on those same rows
by `eval generate`, reaches normalized micro F1 >= 0.95. The same training with a broken label
mask (loss on the user turn instead of the answer) must fail that bar, so the check can fail.

The same 9 rows are train, validation and test: `prepare` splits 3 abstracts 1/1/1, and the
test then writes all 9 chat rows into each split file (the manifest still matches the input,
so the launcher trains on them as they are). ~1.5 min per run on 2 cores, mostly Axolotl's start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from eval.__main__ import main as eval_main
from preprocessing.prepare import is_stale, prepare
from preprocessing.task import RELATION_TEMPLATE, build_prompt

pytestmark = pytest.mark.slow

ABSTRACTS = [
    ("Cisplatin caused nephrotoxicity in rats.", ["cisplatin"], ["nephrotoxicity"]),
    (
        "Haloperidol induced tardive dyskinesia in two patients.",
        ["haloperidol"],
        ["tardive dyskinesia"],
    ),
    (
        "Lithium therapy led to hypothyroidism and goiter.",
        ["lithium"],
        ["hypothyroidism", "goiter"],
    ),
]
# Memorising: every optimizer step sees all 9 rows; a high constant learning rate, no dropout.
# 300 steps: at 100 the relation rows were sometimes one line short of memorised, and one run in
# CI was still at F1 0.67 after 200 (CPU runs vary: thread scheduling changes the sums); the kept
# adapter is the best-F1 evaluation's (100, 200 or 300).
TRAINING = {
    "micro_batch_size": 9, "gradient_accumulation_steps": 1, "learning_rate": 0.01,
    "lr_scheduler": "constant", "warmup_ratio": 0, "lora_dropout": 0, "weight_decay": 0,
    "eval_steps": 100, "save_steps": 100, "logging_steps": 10,
}  # fmt: skip
STEPS = 300
BAR = 0.95


def rows() -> list[dict[str, str]]:
    out = []
    for text, chemicals, diseases in ABSTRACTS:
        relations = [
            RELATION_TEMPLATE.format(chemical=c, disease=d) for c in chemicals for d in diseases
        ]
        for task, items in (
            ("chemical", chemicals),
            ("disease", diseases),
            ("relation", relations),
        ):
            out.append(
                {
                    "prompt": build_prompt(task, text),
                    "completion": "\n".join(f"- {i}" for i in items),
                }
            )
    return out


@pytest.fixture(scope="module")
def memorise_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("memorise")
    data, processed = root / "three_abstracts.jsonl", root / "processed"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows()), "utf-8")
    manifest = prepare(data, processed, show_progress=False)
    assert manifest["abstracts"] == {"train": 1, "validation": 1, "test": 1}
    chats = "".join(
        (processed / f"{split}.jsonl").read_text() for split in ("train", "validation", "test")
    )
    assert chats.count("\n") == 9
    for split in ("train", "validation", "test"):
        (processed / f"{split}.jsonl").write_text(chats, "utf-8")
    assert not is_stale(data, processed)  # the launcher trains on these files as they are
    return data, processed


def train_and_evaluate(data: Path, processed: Path, runs: Path, extra: list[str]) -> dict:
    overrides = [f"{key}={value}" for key, value in TRAINING.items()] + extra
    flags = [arg for item in overrides for arg in ("--override", item)]
    result = run_cli(
        ["training", "train", "tiny-cpu", "--data", data, "--processed", processed,
         "--runs-dir", runs, "--max-steps", STEPS, *flags],
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    assert eval_main(["generate", "--run", str(run), "--backend", "hf"]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["rows_evaluated"] == metrics["rows_in_split"] == 9
    return metrics


def test_the_pipeline_memorises_a_handful_of_rows(memorise_data, tmp_path):
    metrics = train_and_evaluate(*memorise_data, tmp_path / "runs", [])
    f1 = metrics["normalized"]["micro"]["f1"]
    assert f1 >= BAR, json.dumps(metrics["normalized"]["per_task"], indent=1)


def test_a_broken_label_mask_fails_the_same_bar(memorise_data, tmp_path):
    data, processed = memorise_data
    # The recipe's dataset entry with the loss on the user turn instead of the assistant's.
    broken = (
        f"datasets=[{{path: {processed / 'train.jsonl'}, ds_type: json, type: chat_template, "
        "field_messages: messages, roles_to_train: [user], train_on_eos: turn}]"
    )
    metrics = train_and_evaluate(data, processed, tmp_path / "runs", [broken])
    assert metrics["normalized"]["micro"]["f1"] < BAR
