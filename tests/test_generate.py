"""`python -m eval generate` end to end on CPU with a tiny random Llama run, plus compare."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from eval.generate import Target, run_eval, stop_token_ids
from eval.score import score_file
from preprocessing.task import (
    DEFAULT_SYSTEM_PROMPT,
    TASKS,
    build_prompt,
    format_entities,
    format_relations,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")

pytestmark = pytest.mark.slow

ABSTRACTS = [
    (
        "101",
        "Lithium treatment caused tremor and polyuria in two patients.",
        ["Lithium"],
        ["tremor", "polyuria"],
        [("Lithium", "tremor"), ("Lithium", "polyuria")],
    ),
    (
        "102",
        "Cocaine-induced seizures were not prevented by diazepam.",
        ["Cocaine", "diazepam"],
        ["seizures"],
        [("Cocaine", "seizures")],
    ),
]
LIMIT = 5  # of the 6 rows: --limit is exercised too


# ---- a fabricated run (the lead will switch these tests to the shared tiny_run fixture) -------


def chat_rows() -> list[dict]:
    """Rows in the processed-data contract: messages + task, doc_id, prompt, completion."""
    rows = []
    for doc_id, abstract, chemicals, diseases, pairs in ABSTRACTS:
        answers = {
            "chemical": format_entities(chemicals),
            "disease": format_entities(diseases),
            "relation": format_relations(pairs),
        }
        for task, completion in answers.items():
            prompt = build_prompt(task, abstract)
            rows.append(
                {
                    "messages": [
                        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": completion},
                    ],
                    "task": task,
                    "doc_id": doc_id,
                    "prompt": prompt,
                    "completion": completion,
                }
            )
    return rows


def build_tokenizer(texts: list[str]):
    """A small byte-level BPE with the Llama-3 special tokens and Axolotl's llama3 template."""
    from axolotl.utils.chat_templates import get_chat_template
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    # EOS is <|end_of_text|> on purpose: stopping must come from the template's <|eot_id|>.
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        chat_template=get_chat_template("llama3"),
    )


def build_run(root: Path) -> Path:
    """runs/tiny-cpu-<stamp>/ as training leaves it: base model elsewhere, adapter + tokenizer,
    run.json, config.yml; the processed test split beside it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    rows = chat_rows()
    processed = root / "processed"
    processed.mkdir()
    (processed / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    tokenizer = build_tokenizer(
        [r["prompt"] + "\n" + r["completion"] for r in rows] + [DEFAULT_SYSTEM_PROMPT]
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    base_dir = root / "models" / "built" / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    run_dir = root / "runs" / "tiny-cpu-20250101_000000"
    # init_lora_weights=False: a non-zero adapter, so loading it changes the outputs.
    model = get_peft_model(
        LlamaForCausalLM.from_pretrained(base_dir),
        LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
    )
    model.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    (run_dir / "config.yml").write_text(
        f"base_model: {base_dir}\nchat_template: llama3\nadapter: lora\n"
        f"datasets:\n  - path: {processed / 'train.jsonl'}\n    type: chat_template\n"
    )
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "recipe": "tiny-cpu",
                "base_model": str(base_dir),
                "processed_dir": str(processed),
                "test_file": str(processed / "test.jsonl"),
                "system_prompt": DEFAULT_SYSTEM_PROMPT,
            }
        )
    )
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("tiny"))


def generate(*args: str) -> int:
    return eval_main(
        ["generate", *args, "--backend", "hf", "--max-new-tokens", "12", "--batch-size", "2"]
    )


# ---- tests -----------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generate_writes_all_four_files_and_is_deterministic(tiny_run: Path) -> None:
    assert generate("--run", str(tiny_run), "--limit", str(LIMIT)) == 0
    out = tiny_run / "eval"
    predictions = read_jsonl(out / "predictions.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    split = Path(metrics["split_file"])
    test_rows = read_jsonl(split)
    assert len(predictions) == LIMIT
    for row, prediction in zip(test_rows[:LIMIT], predictions, strict=True):
        assert {k: prediction[k] for k in row} == row  # the test row, in order, plus the answer
        assert isinstance(prediction["prediction"], str)
        assert 1 <= prediction["generated_tokens"] <= 12

    assert metrics["backend"] == "hf" and metrics["kind"] == "fine-tuned"
    assert metrics["adapter"] == str(tiny_run) and metrics["recipe"] == "tiny-cpu"
    assert metrics["split_sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    assert (metrics["rows_evaluated"], metrics["rows_in_split"]) == (LIMIT, len(test_rows))
    assert metrics["rows"] == {t: [r["task"] for r in test_rows[:LIMIT]].count(t) for t in TASKS}
    assert metrics["timing"]["generated_tokens"] == sum(p["generated_tokens"] for p in predictions)
    assert metrics["timing"]["rows_per_second"] > 0
    # metrics.json carries exactly what the scorer says about predictions.jsonl
    scored = score_file(out / "predictions.jsonl")
    assert {k: metrics[k] for k in scored} == scored

    report = (out / "report.md").read_text()
    assert "meaningless" in report and "## Scores (strict)" in report
    assert "## Relation format errors" in report and "## Worst examples" in report
    assert (out / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same run, same predictions.
    assert generate("--run", str(tiny_run), "--limit", str(LIMIT)) == 0
    again = read_jsonl(out / "predictions.jsonl")
    assert [p["prediction"] for p in again] == [p["prediction"] for p in predictions]


def test_base_eval_goes_to_recipe_base_and_shows_in_reports(tiny_run: Path, tmp_path: Path) -> None:
    assert generate("--run", str(tiny_run), "--limit", "3") == 0
    assert "## Base vs fine-tuned" not in (tiny_run / "eval" / "report.md").read_text()
    tuned_predictions = read_jsonl(tiny_run / "eval" / "predictions.jsonl")

    info = json.loads((tiny_run / "run.json").read_text())
    recipe = tmp_path / "tiny-cpu.yml"
    recipe.write_text(f"base_model: {info['base_model']}\nchat_template: llama3\n")
    runs = tiny_run.parent
    assert (
        generate(
            "--base",
            str(recipe),
            "--split-file",
            info["test_file"],
            "--runs-dir",
            str(runs),
            "--limit",
            "3",
        )
        == 0
    )
    base = json.loads((runs / "tiny-cpu-base" / "eval" / "metrics.json").read_text())
    assert base["kind"] == "base" and base["adapter"] is None and base["rows_evaluated"] == 3
    base_predictions = read_jsonl(runs / "tiny-cpu-base" / "eval" / "predictions.jsonl")
    # The adapter is really applied: it changes the outputs.
    assert [p["prediction"] for p in base_predictions] != [
        p["prediction"] for p in tuned_predictions
    ]

    # The base eval refreshed the fine-tuned run's report (and plot) with a base column.
    assert "## Base vs fine-tuned" in (tiny_run / "eval" / "report.md").read_text()

    assert eval_main(["compare", str(runs)]) == 0
    table = (runs / "compare.md").read_text()
    assert "| tiny-cpu-base" in table and f"| {tiny_run.name}" in table
    assert (runs / "compare.png").read_bytes()[:4] == b"\x89PNG"


def forced_model(tokenizer, token: str, path: Path) -> str:
    """A tiny Llama whose greedy choice is always `token`, whatever the input."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=False,
        )
    )
    with torch.no_grad():
        # A large constant in dimension 0 of every embedding dominates the final (RMS-normed)
        # hidden state, and only `token` reads that dimension in the output layer.
        model.model.embed_tokens.weight[:, 0] = 50.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = 1.0
    model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize(
    ("token", "finish", "tokens"),
    [
        ("<|eot_id|>", "stop", 1),  # empty answer: one token, the end of turn
        ("\u010a", "length", 6),  # byte-level BPE newline forever: endless empty lines
        ("-", "length", 6),  # endless garbage
    ],
)
def test_empty_and_endless_output_is_generated_and_scored(
    tiny_run: Path, tmp_path: Path, token: str, finish: str, tokens: int
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot in stop_token_ids(tokenizer)  # found in the template, not only the EOS
    info = json.loads((tiny_run / "run.json").read_text())
    target = Target(
        kind="base",
        model=forced_model(tokenizer, token, tmp_path / "model"),
        adapter=None,
        tokenizer=str(tiny_run),
        chat_template=None,
        test_file=Path(info["test_file"]),
        out_dir=tmp_path / "eval",
        recipe=None,
        run=None,
    )
    metrics = run_eval(target, limit=3, batch_size=2, max_new_tokens=6, backend="hf")
    predictions = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert [(p["finish_reason"], p["generated_tokens"]) for p in predictions] == [
        (finish, tokens)
    ] * 3
    expected_text = tokenizer.decode(
        [tokenizer.convert_tokens_to_ids(token)] * tokens, skip_special_tokens=True
    )
    assert {p["prediction"] for p in predictions} == {expected_text}
    assert metrics["hit_max_new_tokens"] == (3 if finish == "length" else 0)
    assert metrics["strict"]["micro"]["tp"] == 0 and (tmp_path / "eval" / "report.md").exists()


def test_bad_inputs_fail_with_a_clear_message(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "test.jsonl"
    rows = chat_rows()[:2]
    rows[1]["messages"] = rows[1]["messages"][:-1]  # no assistant turn
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert generate("--run", str(tiny_run), "--split-file", str(bad)) == 2
    assert f"{bad}:2: 'messages'" in capsys.readouterr().err
    assert generate("--run", str(tmp_path / "missing")) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert generate("--run", str(tiny_run), "--merged") == 2
    assert "no merged model" in capsys.readouterr().err


def test_merged_model_gives_the_adapter_predictions(tiny_run: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((tiny_run / "run.json").read_text())
    run = tmp_path / "runs" / tiny_run.name  # a copy: the shared run stays without merged/
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval", "checkpoint-*"))
    base = AutoModelForCausalLM.from_pretrained(info["base_model"])
    PeftModel.from_pretrained(base, run).merge_and_unload().save_pretrained(run / "merged")
    AutoTokenizer.from_pretrained(run).save_pretrained(run / "merged")

    assert generate("--run", str(run), "--limit", "3") == 0
    with_adapter = read_jsonl(run / "eval" / "predictions.jsonl")
    assert generate("--run", str(run), "--limit", "3", "--merged") == 0
    merged = read_jsonl(run / "eval" / "predictions.jsonl")
    assert json.loads((run / "eval" / "metrics.json").read_text())["kind"] == "merged"
    assert [p["prediction"] for p in merged] == [p["prediction"] for p in with_adapter]


def test_prompts_are_the_training_chat_up_to_the_answer(tiny_run: Path) -> None:
    """The model sees exactly the tokens that preceded the answer in training, nothing more."""
    from transformers import AutoTokenizer

    from eval.generate import encode_prompts

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    rows = read_jsonl(Path(json.loads((tiny_run / "run.json").read_text())["test_file"]))[:3]
    for row, prompt in zip(rows, encode_prompts(tokenizer, rows), strict=True):
        full = tokenizer(
            tokenizer.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False
        )["input_ids"]
        assert full[: len(prompt)] == prompt
        assert prompt.count(tokenizer.bos_token_id) == 1  # the template's BOS, not a second one
        answer = tokenizer.decode(full[len(prompt) :], skip_special_tokens=True)
        assert answer.strip() == row["messages"][-1]["content"].strip()
