"""The model card of a run: Hub metadata that parses, metrics equal to metrics.json, a usage
snippet that runs, and a push that never fails a run nor shows the token."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FAKE_HF_TOKEN, REPO, closed_port, read_jsonl

from eval.score import score_rows
from training.model_card import license_of, push_model_card, write_model_card

pytestmark = pytest.mark.slow


def copy_run(run: Path, runs: Path) -> Path:
    """A private copy of the session's tiny run (tests must not change the shared one)."""
    skip = shutil.ignore_patterns("checkpoint-*", "_prepared")
    return Path(shutil.copytree(run, runs / run.name, ignore=skip))


def split_card(text: str) -> tuple[dict, str]:
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, "the card must start with a YAML header between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def fake_metrics(test_rows: list[dict], right_every: int) -> dict:
    """Real scorer output for predictions that are gold on every n-th row, junk elsewhere."""
    predictions = [
        {**row, "prediction": row["completion"] if i % right_every == 0 else "- x\nhm"}
        for i, row in enumerate(test_rows)
    ]
    metrics = score_rows(predictions)
    metrics.update(rows_evaluated=len(predictions), rows_in_split=len(predictions), backend="hf")
    metrics["split_sha256"] = "ab" * 32  # both scored on one test file: comparable
    return metrics


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    return copy_run(tiny_run, tmp_path / "runs")


def test_card_without_eval(run):
    card = write_model_card(run)
    assert card == run / "README.md"
    meta, body = split_card(card.read_text("utf-8"))
    info = json.loads((run / "run.json").read_text())
    config = yaml.safe_load((run / "config.yml").read_text())

    assert meta["library_name"] == "peft"
    assert (meta["license"], meta["license_name"]) == ("other", "unknown")  # local tiny base
    assert "base_model" not in meta  # a local path is no Hub id
    assert "model-index" not in meta
    assert {"axolotl", "lora", "relation-extraction"} <= set(meta["tags"])
    assert "Not evaluated yet" in body
    assert "Not for clinical decisions" in body
    for key in ("lora_r", "lora_alpha", "learning_rate", "num_epochs", "micro_batch_size"):
        assert f"| `{key}` | `{config[key]}` |" in body
    minutes, seconds = divmod(round(info["train_seconds"]), 60)
    assert f"Training time: {minutes} min {seconds:02d} s" in body
    assert f"CPU only ({info['hardware']['cpu_count']} cores)" in body
    # The data section reads the processed manifest: the sample is called what it is.
    manifest = json.loads((Path(info["processed_dir"]) / "manifest.json").read_text())
    assert "synthetic sample data" in body
    test_rows = manifest["rows"]["test"]
    assert (
        f"| test | {manifest['abstracts']['test']} | {test_rows['chemical']} | "
        f"{test_rows['disease']} | {test_rows['relation']} |"
    ) in body


def test_model_index_equals_metrics_json(run, processed_sample):
    from huggingface_hub import ModelCard

    test_rows = read_jsonl(processed_sample / "test.jsonl")
    metrics, base = fake_metrics(test_rows, 2), fake_metrics(test_rows, 5)
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    base_dir = run.parent / "tiny-cpu-base" / "eval"
    base_dir.mkdir(parents=True)
    (base_dir / "metrics.json").write_text(json.dumps(base))

    text = write_model_card(run).read_text("utf-8")
    meta, body = split_card(text)
    (result,) = meta["model-index"][0]["results"]
    found = {entry["name"]: entry["value"] for entry in result["metrics"]}
    expected = {}
    for mode in ("strict", "normalized"):
        for task in ("chemical", "disease", "relation"):
            expected[f"{task} F1 ({mode})"] = metrics[mode]["per_task"][task]["f1"]
        for stat in ("precision", "recall", "f1"):
            expected[f"micro {stat} ({mode})"] = metrics[mode]["micro"][stat]
        expected[f"macro F1 ({mode})"] = metrics[mode]["macro_f1"]
    assert found == expected
    assert 0 < metrics["strict"]["micro"]["f1"] < 1  # the numbers are not trivially 0 or 1

    # huggingface_hub's own parser reads the same numbers back.
    parsed = ModelCard(text).data.eval_results
    assert {r.metric_name: r.metric_value for r in parsed} == expected

    # Base vs fine-tuned, strict then normalized, 3 decimals.
    f1 = [
        block[mode]["per_task"]["disease"]["f1"]
        for mode in ("strict", "normalized")
        for block in (base, metrics)
    ]
    assert "| disease | " + " | ".join(f"{v:.3f}" for v in f1) + " |" in body
    assert "mean nothing about extraction quality" in body  # tiny-cpu says so

    # A base scored on another test file is not set beside the run.
    (base_dir / "metrics.json").write_text(json.dumps(base | {"split_sha256": "cd" * 32}))
    _, body = split_card(write_model_card(run).read_text("utf-8"))
    assert "| disease | " + " | ".join(f"{v:.3f}" for v in f1) + " |" not in body
    assert "No base-model evaluation on the same test file and rows" in body


@pytest.mark.parametrize(
    ("base", "license_id"),
    [
        ("meta-llama/Llama-3.2-3B-Instruct", "llama3.2"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "apache-2.0"),
        ("microsoft/Phi-3-mini-4k-instruct", "mit"),
        ("Qwen/Qwen2.5-7B-Instruct", "apache-2.0"),
        ("Qwen/Qwen2.5-3B-Instruct", "other"),
        ("models/built/tiny-llama", "other"),
    ],
)
def test_licenses_of_bases(base, license_id):
    assert license_of(base)[0] == license_id


def test_every_gpu_recipe_has_a_known_license():
    recipes = [p for p in (REPO / "recipes").glob("*.yml") if p.stem != "tiny-cpu"]
    assert recipes
    for recipe in recipes:
        base = yaml.safe_load(recipe.read_text())["base_model"]
        assert license_of(base)[0] != "other", f"{recipe.name}: no licence known for {base}"


def test_usage_snippet_runs(run, tmp_path):
    text = write_model_card(run).read_text("utf-8")
    (snippet,) = re.findall(r"```python\n(.*?)```", text, re.S)
    # A random tiny model never stops by itself: fewer tokens keep the test fast.
    snippet = snippet.replace("max_new_tokens=256", "max_new_tokens=8")
    result = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _with_hub_repo(run: Path) -> None:
    info = json.loads((run / "run.json").read_text())
    info["hub_repo"] = "someone/tiny-cpu-test"
    (run / "run.json").write_text(json.dumps(info))


def test_push_without_hub_repo_is_a_quiet_no(run, caplog):
    write_model_card(run)
    assert push_model_card(run) is False
    assert not caplog.records


def test_push_offline_warns_and_hides_the_token(run, monkeypatch, caplog, capsys):
    _with_hub_repo(run)
    write_model_card(run)
    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    with caplog.at_level(logging.WARNING):
        assert push_model_card(run) is False  # HF_HUB_OFFLINE=1 in tests
    assert "someone/tiny-cpu-test" in caplog.text
    captured = capsys.readouterr()
    assert FAKE_HF_TOKEN not in caplog.text + captured.out + captured.err


def test_push_to_unreachable_hub_warns_and_hides_the_token(run):
    _with_hub_repo(run)
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update(HF_TOKEN=FAKE_HF_TOKEN, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    result = subprocess.run(
        [sys.executable, "-m", "training", "card", str(run), "--push"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not pushed" in result.stdout and "someone/tiny-cpu-test" in result.stderr
    assert FAKE_HF_TOKEN not in result.stdout + result.stderr
    assert FAKE_HF_TOKEN not in (run / "README.md").read_text()
