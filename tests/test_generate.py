"""`python -m eval generate` end to end on CPU with the session's tiny-cpu run, plus compare."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import read_jsonl

from eval.__main__ import main as eval_main
from eval.generate import Target, resolve_run, run_eval
from eval.score import score_file
from inference.run import stop_token_ids
from preprocessing.task import TASKS

pytestmark = pytest.mark.slow

LIMIT = 5  # of the split's rows: --limit is exercised too
# The tiny run trains 4 steps: its adapter barely moves the random model's greedy answers.
# Scaled up this much it visibly does, so a test can tell "adapter applied" from "not".
BOOST = 100.0


def copy_run(tiny_run: Path, tmp_path: Path, boost: float | None = None) -> Path:
    """A private copy of the shared run in tmp_path/runs/ (tests write eval/ and README.md into
    it); with `boost`, its LoRA B weights multiplied by that factor."""
    skip = shutil.ignore_patterns("checkpoint-*", "_prepared", "eval", "runs")
    run = Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name, ignore=skip))
    if boost is not None:
        from safetensors.torch import load_file, save_file

        path = run / "adapter_model.safetensors"
        weights = load_file(path)
        save_file({k: v * boost if "lora_B" in k else v for k, v in weights.items()}, path)
    return run


def generate(*args: str, engine: str = "auto") -> int:
    return eval_main(
        ["generate", *args, "--engine", engine, "--max-new-tokens", "12", "--batch-size", "2"]
    )


# ---- tests -----------------------------------------------------------------------------------


def test_generate_writes_all_four_files_and_is_deterministic(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = copy_run(tiny_run, tmp_path)
    assert generate("--run", str(run), "--limit", str(LIMIT)) == 0
    out = run / f"eval-limit{LIMIT}"  # a partial eval never takes the full eval's place
    assert not (run / "eval").exists()
    predictions = read_jsonl(out / "predictions.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    split = Path(metrics["split_file"])
    test_rows = read_jsonl(split)
    assert len(predictions) == LIMIT
    for row, prediction in zip(test_rows[:LIMIT], predictions, strict=True):
        assert {k: prediction[k] for k in row} == row  # the test row, in order, plus the answer
        assert isinstance(prediction["prediction"], str)
        assert 1 <= prediction["generated_tokens"] <= 12

    assert metrics["backend"] == "fast" and metrics["kind"] == "fine-tuned"  # auto: a llama
    assert metrics["adapter"] == str(run) and metrics["recipe"] == "tiny-cpu"
    assert metrics["split_sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    assert (metrics["rows_evaluated"], metrics["rows_in_split"]) == (LIMIT, len(test_rows))
    assert metrics["rows"] == {t: [r["task"] for r in test_rows[:LIMIT]].count(t) for t in TASKS}
    assert metrics["timing"]["generated_tokens"] == sum(p["generated_tokens"] for p in predictions)
    assert metrics["timing"]["rows_per_second"] > 0
    assert metrics["timing"]["decode_steps"] >= 1 and metrics["engine"]["graphs"] == "eager (cpu)"
    # metrics.json carries exactly what the scorer says about predictions.jsonl
    scored = score_file(out / "predictions.jsonl")
    assert {k: metrics[k] for k in scored} == scored

    report = (out / "report.md").read_text()
    assert "meaningless" in report and "## Scores (strict)" in report
    assert "## Relation format errors" in report and "## Worst examples" in report
    assert (out / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same run, same predictions.
    assert generate("--run", str(run), "--limit", str(LIMIT)) == 0
    again = read_jsonl(out / "predictions.jsonl")
    assert [p["prediction"] for p in again] == [p["prediction"] for p in predictions]


def test_base_eval_goes_to_recipe_base_and_shows_in_reports(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path, boost=BOOST)
    assert generate("--run", str(run)) == 0  # the whole (6-row) split: base vs tuned are full
    assert "## Base vs fine-tuned" not in (run / "eval" / "report.md").read_text()
    tuned_predictions = read_jsonl(run / "eval" / "predictions.jsonl")

    info = json.loads((run / "run.json").read_text())
    recipe = tmp_path / "tiny-cpu.yml"
    recipe.write_text(f"base_model: {info['base_model']}\nchat_template: llama3\n")
    runs = run.parent
    assert (
        generate(
            "--base",
            str(recipe),
            "--split-file",
            info["test_file"],
            "--runs-dir",
            str(runs),
        )
        == 0
    )
    base = json.loads((runs / "tiny-cpu-base" / "eval" / "metrics.json").read_text())
    assert base["kind"] == "base" and base["adapter"] is None and base["rows_evaluated"] == 6
    base_predictions = read_jsonl(runs / "tiny-cpu-base" / "eval" / "predictions.jsonl")
    # The adapter is really applied: it changes the outputs.
    assert [p["prediction"] for p in base_predictions] != [
        p["prediction"] for p in tuned_predictions
    ]

    # The base eval refreshed the fine-tuned run's report (and plot) with a base column.
    assert "## Base vs fine-tuned" in (run / "eval" / "report.md").read_text()

    assert eval_main(["compare", str(runs)]) == 0
    table = (runs / "compare.md").read_text()
    assert "| tiny-cpu-base" in table and f"| {run.name}" in table
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


@pytest.mark.parametrize("engine", ["fast", "hf"])
@pytest.mark.parametrize(
    ("token", "finish", "tokens"),
    [
        ("<|eot_id|>", "stop", 1),  # empty answer: one token, the end of turn
        ("\u010a", "length", 6),  # byte-level BPE newline forever: endless empty lines
        ("-", "length", 6),  # endless garbage
    ],
)
def test_empty_and_endless_output_is_generated_and_scored(
    tiny_run: Path, tmp_path: Path, token: str, finish: str, tokens: int, engine: str
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    probe = AutoTokenizer.from_pretrained(tiny_run)
    probe.eos_token = "<|end_of_text|>"  # the tiny tokenizer's EOS is <|eot_id|> itself
    assert eot in stop_token_ids(probe)  # found in the template, not only the EOS
    info = json.loads((tiny_run / "run.json").read_text())
    out = tmp_path / "runs" / "forced-base" / "eval-limit3"  # where --limit 3 goes
    target = Target(
        kind="base",
        model=forced_model(tokenizer, token, tmp_path / "model"),
        adapter=None,
        tokenizer=str(tiny_run),
        chat_template=None,
        test_file=Path(info["test_file"]),
        out_dir=out.with_name("eval"),
        recipe=None,
        run=None,
    )
    metrics = run_eval(target, limit=3, batch_size=2, max_new_tokens=6, engine=engine)
    assert metrics["backend"] == engine
    predictions = read_jsonl(out / "predictions.jsonl")
    assert [(p["finish_reason"], p["generated_tokens"]) for p in predictions] == [
        (finish, tokens)
    ] * 3
    expected_text = tokenizer.decode(
        [tokenizer.convert_tokens_to_ids(token)] * tokens, skip_special_tokens=True
    )
    assert {p["prediction"] for p in predictions} == {expected_text}
    assert metrics["hit_max_new_tokens"] == (3 if finish == "length" else 0)
    assert metrics["strict"]["micro"]["tp"] == 0 and (out / "report.md").exists()


def test_bad_inputs_fail_with_a_clear_message(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "test.jsonl"
    rows = read_jsonl(Path(json.loads((tiny_run / "run.json").read_text())["test_file"]))[:2]
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

    # Boosted: an adapter that changes the answers, so equal predictions mean it was merged.
    run = copy_run(tiny_run, tmp_path, boost=BOOST)
    base = AutoModelForCausalLM.from_pretrained(resolve_run(run, None, False).model)
    PeftModel.from_pretrained(base, run).merge_and_unload().save_pretrained(run / "merged")
    AutoTokenizer.from_pretrained(run).save_pretrained(run / "merged")

    assert generate("--run", str(run), "--limit", "3") == 0
    with_adapter = read_jsonl(run / "eval-limit3" / "predictions.jsonl")
    assert generate("--run", str(run), "--limit", "3", "--merged") == 0
    merged = read_jsonl(run / "eval-limit3" / "predictions.jsonl")
    assert json.loads((run / "eval-limit3" / "metrics.json").read_text())["kind"] == "merged"
    assert [p["prediction"] for p in merged] == [p["prediction"] for p in with_adapter]


def test_prompts_are_the_training_chat_up_to_the_answer(tiny_run: Path) -> None:
    """The model sees exactly the tokens that preceded the answer in training, nothing more."""
    from transformers import AutoTokenizer

    from inference.run import encode_prompts

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


def test_decoding_in_rounds_gives_the_single_pass_answers(tiny_run: Path, tmp_path: Path) -> None:
    """Rows still going after a round continue from their tokens so far: same answers, same
    finish reasons and lengths as one generate call over the whole budget; and the fast engine
    gives those answers too."""
    import torch
    from transformers import GenerationConfig

    from eval.generate import load_test_rows
    from inference.decode import generate_greedy
    from inference.hf_rounds import left_padded, round_budgets
    from inference.load import load_model
    from inference.run import encode_prompts, load_tokenizer

    assert round_budgets(30, 2) == [2, 4, 8, 16]
    assert round_budgets(20, 64) == [20]
    run = copy_run(tiny_run, tmp_path, boost=BOOST)
    target = resolve_run(run, None, merged=False)
    tokenizer = load_tokenizer(target)
    rows, _ = load_test_rows(target.test_file, None)
    prompts = encode_prompts(tokenizer, rows)
    model = load_model(target.model, target.adapter, tokenizer)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    # Stopping also at up to three tokens the model writes, each
    # added only if rows then stop at more different steps (or not at all) while some row still
    # outlasts the first round, makes rows stop in different rounds where its outputs allow.
    with torch.inference_mode():
        inputs = left_padded(prompts, eot, model.device)
        config = GenerationConfig(
            do_sample=False, max_new_tokens=20, eos_token_id=[eot], pad_token_id=eot
        )
        output = model.generate(**inputs, generation_config=config)
    ids = output[:, inputs["input_ids"].shape[1] :].tolist()
    # Whether the tiny run's adapter ever writes <|eot_id|> varies with CPU run-to-run noise in
    # its training; either way eot is a stop and the rounds must reproduce the single pass.

    def stop_steps(stops: list[int]) -> set[int | None]:
        return {next((i for i, t in enumerate(row) if t in stops), None) for row in ids}

    stops = [eot]
    for token in sorted({t for row in ids for t in row}):
        steps = stop_steps([*stops, token])
        later = any(step is None or step >= 2 for step in steps)
        if len(stops) < 4 and later and len(steps) > len(stop_steps(stops)):
            stops.append(token)
    single, single_stats = generate_greedy(
        model, tokenizer, prompts, 20, stops, batch_size=4, engine="hf", first_round_tokens=20
    )
    expected = [(g.text, g.finish_reason, g.new_tokens) for g in single]
    assert len(single_stats["rounds"]) == 1
    for kv_cache in ("dynamic", "static"):
        rounds, stats = generate_greedy(
            model, tokenizer, prompts, 20, stops, 4, engine="hf", first_round_tokens=2,
            kv_cache=kv_cache,
        )  # fmt: skip
        assert [(g.text, g.finish_reason, g.new_tokens) for g in rounds] == expected, kv_cache
        # Each round carries only the rows that had not stopped.
        carried = [r["rows"] for r in stats["rounds"]]
        assert len(carried) > 1 and carried == sorted(carried, reverse=True)
        assert carried[0] == len(prompts)
    fast, _ = generate_greedy(model, tokenizer, prompts, 20, stops, engine="fast")
    assert [(g.text, g.finish_reason, g.new_tokens) for g in fast] == expected
