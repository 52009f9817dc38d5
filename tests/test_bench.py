"""The GPU benchmark's code on CPU: token arithmetic, the step timer, the seed script on the tiny
model, the document rendered from results, and (slow) `bench train --smoke` through the real
training launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import table
from bench.metrics import count_batch, merge_ranks, summarize
from bench.seed_baseline import seed_text
from bench.seed_eval import seed_prompt
from bench.timer import StepTimer

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "models" / "built" / "tiny-llama"
SAMPLE = REPO / "data" / "sample" / "sample_instruct.jsonl"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1",
       "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
PAD = 9


def _ints(batch) -> tuple[int, ...]:
    return tuple(int(t) for t in batch)


# ---- counting tokens of one micro-batch -------------------------------------------------------


def test_padded_rows_count_mask_ones_and_one_example_per_row():
    inputs = {
        "input_ids": torch.tensor([[5, 6, 7, 8], [5, 6, PAD, PAD]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
    }
    assert _ints(count_batch(inputs, PAD)) == (6, 8, 2)


def test_packed_rows_with_sequence_id_mask_count_each_packed_example():
    # Axolotl's packed collator numbers the examples of a row 1, 2, ... and pads with 0.
    inputs = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 9, PAD, PAD], [5, 6, 7, 8, 5, 6, 7]]),
        "attention_mask": torch.tensor([[1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 2, 2, 3]]),
    }
    assert _ints(count_batch(inputs, PAD)) == (12, 14, 5)


def test_packed_rows_without_mask_drop_only_the_trailing_padding():
    # Varlen attention: no mask, position_ids restart per example and run on through the pad.
    # A real token equal to the pad id with a trained label (row 2's end) is not padding.
    inputs = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 7, PAD, PAD], [5, 6, 7, 8, 5, 6, PAD]]),
        "labels": torch.tensor([[-100, 6, 7, -100, 7, -100, -100], [-100, 6, 7, 8, 5, 6, PAD]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1], [0, 1, 2, 3, 0, 1, 2]]),
    }
    assert _ints(count_batch(inputs, PAD)) == (12, 14, 4)


# ---- the reported numbers ---------------------------------------------------------------------


def test_summarize_tokens_per_second_padding_and_three_epoch_projection():
    result = summarize(real_tokens=3000, slots=4000, examples=64, seconds=2.0, steps=4,
                       epoch_real_tokens=10_000)  # fmt: skip
    assert result["real_tokens_per_s"] == 1500.0
    assert result["padding_fraction"] == 0.25
    assert result["seconds_per_step"] == 0.5
    assert result["examples_per_step"] == 16.0
    assert result["projected_seconds"] == 20.0  # 3 epochs x 10,000 tokens / 1,500 per second


def test_summarize_refuses_an_empty_window():
    with pytest.raises(ValueError, match="empty timing window"):
        summarize(real_tokens=0, slots=0, examples=0, seconds=0.0, steps=0, epoch_real_tokens=1)


def test_ranks_add_tokens_and_take_the_slowest_rank_and_largest_memory():
    def record(real, seconds, memory):
        raw = {"real_tokens": real, "token_slots": real, "examples": 8, "seconds": seconds,
               "steps": 2, "warmup_steps": 1}  # fmt: skip
        return {"raw": raw, "epoch_real_tokens": 100, "peak_memory_gib": memory}

    merged = merge_ranks([record(1000, 1.0, 3.0), record(1000, 2.0, 4.0)])
    assert merged["real_tokens_per_s"] == 1000.0
    assert merged["examples"] == 16
    assert merged["peak_memory_gib"] == 4.0
    assert merged["ranks"] == 2


def test_step_timer_counts_only_the_timed_steps():
    timer = StepTimer(warmup=1, steps=2, pad_token_id=PAD)
    state = SimpleNamespace(global_step=0)
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long),
             "attention_mask": torch.ones(2, 5, dtype=torch.long)}  # fmt: skip
    for step in range(1, 5):  # each optimizer step: one micro-batch, then on_step_end
        timer.count(batch)
        state.global_step = step
        timer.on_step_end(None, state, None)
    record = timer.record(epoch_real_tokens=50)
    assert record["raw"]["real_tokens"] == 20  # steps 2 and 3 only
    assert record["raw"]["examples"] == 4
    assert record["raw"]["seconds"] > 0


def test_step_timer_says_when_training_stopped_before_the_window_closed():
    timer = StepTimer(warmup=1, steps=5, pad_token_id=PAD)
    timer.on_step_end(None, SimpleNamespace(global_step=1), None)
    with pytest.raises(RuntimeError, match="stopped before step 6"):
        timer.record()


# ---- the seed's formats -------------------------------------------------------------------------


def test_seed_text_is_one_llama3_string_with_the_rows_system_prompt():
    row = {
        "messages": [
            {"role": "system", "content": "SYS"},
            {"role": "user", "content": "P"},
            {"role": "assistant", "content": "C"},
        ],
        "prompt": "P",
        "completion": "C",
    }
    assert seed_text(row) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nP<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nC<|eot_id|>"
    )
    assert seed_text(row).startswith(seed_prompt(row))
    assert seed_prompt(row).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


# ---- `bench train --smoke` / `bench eval --smoke`: the real code paths, tiny, on CPU -----------


def _bench(*args: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "bench", *args, "--smoke", "--out-dir", str(out)],
                   cwd=REPO, env=ENV, check=True)  # fmt: skip
    return json.loads((out / f"{args[0]}.json").read_text())


@pytest.fixture(scope="module")
def smoke_train(tmp_path_factory) -> dict:
    return _bench("train", out=tmp_path_factory.mktemp("bench-train"))


@pytest.mark.slow
def test_seed_side_trains_timed_steps_without_4bit_on_cpu_and_says_so(smoke_train):
    seed = smoke_train["seed"]
    timing = seed["timing"]
    assert timing["timed_steps"] == 2
    assert timing["examples"] == 2 * 4 * 4  # 2 steps x batch 4 x accumulation 4, no packing
    assert 0 < timing["real_tokens"] < timing["token_slots"]  # padded to the longest row
    assert timing["real_tokens_per_s"] > 0
    # One epoch = every train row in the seed's format, tokenized as the seed did.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    processed = REPO / smoke_train["data"]["processed"]
    rows = [json.loads(line) for line in (processed / "train.jsonl").open()]
    expected = sum(len(tokenizer(seed_text(r), truncation=True, max_length=2048)["input_ids"])
                   for r in rows)  # fmt: skip
    assert timing["epoch_real_tokens"] == expected
    projected = 3 * expected / timing["real_tokens_per_s"]  # reported to 0.1 s
    assert timing["projected_seconds"] == pytest.approx(projected, abs=0.1)
    assert seed["quantization"] == "none (no CUDA)"
    assert any("no bitsandbytes 4-bit" in d for d in seed["deviations"])
    assert seed["kernels"]["attn_implementation"] == "sdpa"


@pytest.mark.slow
def test_our_side_goes_through_the_launcher_with_only_model_steps_and_plugin_changed(
    smoke_train,
):
    ours = smoke_train["ours"]
    run_dir = REPO / ours["run_dir"]
    assert (run_dir / "adapter_config.json").is_file()  # a normal, finished run
    config = ours["config"]
    # The recipe's own plugins, then the timing plugin appended.
    assert config["max_steps"] == 3 and config["plugins"] == [
        "training.axolotl_plugin.RunPlugin",
        "eval.training_f1.TrainingF1Plugin",
        "bench.axolotl_plugin.BenchTimingPlugin",
    ]
    assert ours["timing"]["examples"] == 2 * 4 * 4  # tiny-cpu: micro-batch 4 x accumulation 4
    assert ours["timing"]["real_tokens"] > 0
    assert ours["kernels"]["attn_implementation"] == "sdpa"
    launch = smoke_train["commands"][-1]
    assert launch.startswith("BENCH_WARMUP_STEPS=1 python -m training train tiny-cpu")
    ratio = ours["timing"]["real_tokens_per_s"] / smoke_train["seed"]["timing"]["real_tokens_per_s"]
    assert smoke_train["ratios_ours_over_seed"]["real_tokens_per_s"] == round(ratio, 2)
    assert smoke_train["smoke"] is True and smoke_train["device"].startswith("cpu")


@pytest.mark.slow
def test_eval_smoke_runs_the_seed_loop_and_our_eval_with_the_same_budget(smoke_train, tmp_path):
    result = _bench("eval", "--run", smoke_train["ours"]["run_dir"], out=tmp_path)
    seed, ours = result["seed"], result["ours"]
    assert seed["rows_generated"] == 2 and ours["rows_evaluated"] == 2
    assert seed["max_new_tokens"] == ours["max_new_tokens"]
    # Our command's phases, and the time its process took beyond them, measured outside.
    assert ours["phases"]["command_seconds"] <= ours["command_seconds"] + 0.05
    assert ours["phases"]["after_seconds"] >= 0
    assert result["seed_split_projected"] and result["ours_split_projected"]
    rows = result["split_rows"]
    expected = seed["timing"]["load_seconds"] + rows * seed["timing"]["seconds_per_row"]
    assert result["seed_split_seconds"] == pytest.approx(expected, abs=0.1)
    assert result["speedup"] == round(
        result["seed_split_seconds"] / result["ours_split_seconds"], 1
    )
    assert (tmp_path / "eval.log").is_file()


# ---- docs/benchmarks.md is rendered from the results JSON -------------------------------------


def _side(tokens_per_s: float, memory: float, extra: dict) -> dict:
    seconds = 10.0
    timing = summarize(
        real_tokens=int(tokens_per_s * seconds),
        slots=int(tokens_per_s * 12.5),
        examples=320,
        seconds=seconds,
        steps=20,
        epoch_real_tokens=1_000_000,
    )
    timing.update(peak_memory_gib=memory, losses=[], interruptions=[])
    raw = {"warmup_steps": 3, "steps": 20}
    kernels = {"attn_implementation": "sdpa", "non_stock_modules": ["bitsandbytes.nn.Linear4bit"],
               "patched_forwards": []}  # fmt: skip
    return {"timing": timing, "rank_records": [{"raw": raw}], "kernels": kernels, **extra}


def test_table_shows_the_numbers_of_the_results_json(tmp_path):
    train = {
        "benchmark": "train", "date": "2026-11-28T10:00:00+00:00", "device": "NVIDIA H100 X",
        "versions": {"torch": "2.11"}, "matmul_bf16_tflops": 790.0, "commands": ["python -m x"],
        "model": {"path_or_id": "bench/work/models/llama-3.2-3b", "parameters": 3_212_749_824,
                  "architecture_of": "meta-llama/Llama-3.2-3B-Instruct", "config": {}},
        "seed": _side(1963.0, 10.5, {"precision": "fp16", "quantization": "nf4",
                                     "settings": {"max_length": 2048}, "deviations": ["d1"]}),
        "ours": _side(8600.0, 2.3, {"recipe": "llama3b-qlora",
                                    "config": {"bf16": True, "load_in_4bit": True,
                                               "sample_packing": True, "sequence_len": 4096}}),
        "ratios_ours_over_seed": {"real_tokens_per_s": 4.38, "peak_memory": 0.219},
        "matmul_utilisation": {"seed": 0.048, "ours": 0.21},
        "targets": {"speedup_at_least": 7.0, "speedup_met": False,
                    "peak_memory_not_above_seed": True, "three_epochs_at_most_s": 240.0,
                    "three_epochs_met": False},
    }  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(train))
    text = table.render(tmp_path)
    assert "1,963.0" in text and "8,600.0" in text and "4.38×" in text
    assert "NVIDIA H100 X" in text and "\npython -m x\n" in text
    assert "10.50 GiB" in text and "2.30 GiB" in text
    assert "25.5 min" in text  # seed: 3 x 1,000,000 tokens / 1,963 tokens/s
    assert "**missed**" in text  # 4.38x is short of the 7x target
    assert "Linear4bit (bitsandbytes)" in text
    assert "Not run yet (`python -m bench eval`)" in text


def test_committed_benchmarks_doc_matches_the_committed_results():
    doc = REPO / "docs" / "benchmarks.md"
    assert doc.read_text("utf-8") == table.render(REPO / "bench" / "results"), (
        "docs/benchmarks.md is out of date: run `python -m bench table`"
    )


def test_validation_subset_points_only_the_eval_file_at_the_first_rows(tmp_path):
    import yaml

    from bench.steps import validation_subset

    processed = tmp_path / "processed"
    processed.mkdir()
    rows = [json.dumps({"messages": [], "n": i}) + "\n" for i in range(10)]
    (processed / "validation.jsonl").write_text("".join(rows), "utf-8")
    config = yaml.safe_load((REPO / "recipes" / "mistral7b-qlora.yml").read_text("utf-8"))

    [override] = validation_subset(config, processed, 4)
    key, _, value = override.partition("=")
    datasets = json.loads(value)
    assert key == "test_datasets"
    subset = REPO / datasets[0]["path"]
    assert subset.read_text("utf-8") == "".join(rows[:4])
    # every eval key but the file stays as the recipe has it
    assert {k: v for k, v in datasets[0].items() if k != "path"} == {
        k: v for k, v in config["test_datasets"][0].items() if k != "path"
    }
    assert validation_subset(config, processed, None) == []


# ---- `bench profile`: where a step's time goes ---------------------------------------------


def test_gpu_busy_time_is_the_union_of_kernel_intervals():
    from bench.profile import busy_us

    # Two overlapping kernels on different streams, one nested, one apart: 0-10, 5-15, 6-7, 20-25.
    assert busy_us([(5, 15), (0, 10), (6, 7), (20, 25)]) == 20
    assert busy_us([]) == 0


@pytest.mark.parametrize(
    ("kernel", "category"),
    [
        (
            "void kDequantizeBlockwise<__nv_bfloat16, 512, 64, 8, 2>(float*, unsigned char*)",
            "dequantize_4bit",
        ),
        ("nvjet_tst_192x192_64x3_2x1_v_bz_coopB_NNT", "matmul"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>", "attention"),
        ("_rms_norm_forward_kernel", "triton_fused"),
        ("void at::native::vectorized_elementwise_kernel<4, Add>", "elementwise_and_reduce"),
        ("void kOptimizer32bit2State<__nv_bfloat16, 0, 4096, 8>", "optimizer"),
    ],
)
def test_kernels_are_sorted_into_the_categories_the_issue_asks_about(kernel, category):
    from bench.profile import kernel_category

    assert kernel_category(kernel) == category


@pytest.mark.slow
def test_profile_smoke_profiles_steps_of_the_real_launcher_run(tmp_path):
    result = _bench("profile", "--steps", "2", out=tmp_path)
    profile = result["profile"]
    assert profile["steps"] == 2 and profile["wall_ms_per_step"] > 0
    assert profile["host"]["optimizer_step"]["calls_per_step"] == 1.0
    names = [op["name"] for op in profile["top_host_ops_by_self_time"]]
    assert "aten::mm" in names  # the model's matmuls were recorded
    assert result["timing_under_profiler"]["timed_steps"] == 2
    assert result["commands"][-1].startswith(
        "BENCH_WARMUP_STEPS=1 BENCH_PROFILE_STEPS=2 python -m training train tiny-cpu"
    )


@pytest.mark.slow
def test_levers_smoke_trains_each_lever_with_its_overrides(tmp_path):
    subprocess.run([sys.executable, "-m", "bench", "levers", "--smoke", "--warmup", "1",
                    "--steps", "1", "--lever", "no-dropout", "lora_dropout=0",
                    "--out-dir", str(tmp_path)], cwd=REPO, env=ENV, check=True)  # fmt: skip
    levers = json.loads((tmp_path / "levers-tiny-cpu.json").read_text())["levers"]
    assert list(levers) == ["recipe", "no-dropout"]
    assert levers["no-dropout"]["overrides"] == ["lora_dropout=0"]
    for lever in levers.values():
        assert lever["real_tokens_per_s"] > 0 and lever["speed_vs_recipe"] > 0
    # Each lever is its own real run; only the lever's own keys differ between them.
    configs = [(REPO / lever["run_dir"] / "config.yml").read_text() for lever in levers.values()]
    assert "lora_dropout: 0.05" in configs[0] and "lora_dropout: 0\n" in configs[1]


@pytest.mark.slow
def test_profile_generate_smoke_times_decoding_steps_per_batch_size(smoke_train, tmp_path):
    result = _bench("profile-generate", "--run", smoke_train["ours"]["run_dir"], out=tmp_path)
    batches = result["batches"]
    assert [(b["rows"], b["kv_cache"]) for b in batches.values()] == [
        (1, "static"), (2, "static"), (1, "dynamic"), (2, "dynamic")
    ]  # fmt: skip
    for batch in batches.values():
        assert batch["new_tokens"] == 4
        assert batch["decode_ms_per_step"] > 0
        assert batch["profile"]["steps"] == 4
        # The model's forward ran: one matmul per projection and layer, plus the LM head.
        names = [op["name"] for op in batch["profile"]["top_host_ops_by_self_time"]]
        assert "aten::mm" in names
    assert result["adapter_merged"] is True  # loaded as eval generate loads a run


@pytest.mark.slow
def test_decoding_smoke_compares_rounds_with_one_round_on_the_same_rows(smoke_train, tmp_path):
    result = _bench("decoding", "--run", smoke_train["ours"]["run_dir"], out=tmp_path)
    strategies = result["strategies"]
    assert list(strategies) == ["rounds-static-cache", "rounds-dynamic-cache", "one-round"]
    assert result["first_strategy"] == "rounds-static-cache"
    rows = result["rows"]
    assert rows == 2 < result["rows_in_split"]  # --smoke: --limit 2
    for measured in strategies.values():
        assert measured["seconds"] > 0 and measured["generated_tokens"] > 0
        assert measured["answers_equal_to_first_strategy"] == rows  # greedy: same answers
    assert strategies["one-round"]["rounds"][0]["new_tokens"] == result["max_new_tokens"]
    assert strategies["rounds-static-cache"]["rounds"][0]["rows"] == rows


def test_whole_run_measure_adds_the_edges_and_checks_the_targets(tmp_path):
    """`bench run`: run.json's phases plus make's start and the exit, targets from the phases."""
    from bench.run import _targets, measure

    phases = [
        {"phase": "start-up: python + axolotl import", "seconds": 20.0, "peak_gib": 0.0},
        {"phase": "optimizer steps", "seconds": 100.0, "peak_gib": 4.8},
        {"phase": "evaluation @ step 100", "seconds": 4.0, "peak_gib": 2.4},
        {"phase": "checkpoint save @ step 100", "seconds": 1.0, "peak_gib": 2.4},
        {"phase": "optimizer steps", "seconds": 50.0, "peak_gib": 4.8},
        {"phase": "evaluation @ step 150", "seconds": 6.0, "peak_gib": 2.4},
    ]
    record = {
        "command_started": 1000.5,
        "phases": phases,
        "phase_summary": {"optimizer steps": {"count": 2, "seconds": 150.0, "peak_gib": 4.8}},
        "phase_facts": {"train_tokens_per_epoch": 1_000_000, "epochs": 3.0},
        "status": "finished",
    }
    measured = measure(record, spawned=1000.0, exited=1000.5 + 181.0 + 2.0)
    assert measured["command_seconds"] == 183.5
    assert measured["phases"][0] == {
        "phase": "make + interpreter start", "seconds": 0.5, "peak_gib": None,
    }  # fmt: skip
    assert measured["phases"][-1]["phase"] == "launcher exit"
    assert measured["phases"][-1]["seconds"] == 2.0
    assert measured["evaluation_seconds"] == [4.0, 6.0]
    assert measured["optimizer_tokens_per_s"] == 20_000.0  # 3 x 1M tokens / 150 s
    targets = _targets(measured)
    assert targets["command_met"] and targets["peak_memory_met"]
    assert targets["optimizer_tokens_met"]
    assert not targets["evaluation_met"]  # 6 s > 5 s
    result = {"benchmark": "run", "date": "d", "device": "NVIDIA H200", "recipe": "llama3b-qlora",
              "run_dir": "runs/x", "commands": ["make train RECIPE=llama3b-qlora"],
              "max_steps": None, **measured, "seed": None, "targets": targets}  # fmt: skip
    (tmp_path / "run-llama3b-qlora.json").write_text(json.dumps(result))
    text = table.render(tmp_path)
    assert "The whole `make train` (llama3b-qlora)" in text
    assert "3.1 min (184 s)" in text and "| 6.0 s (2 evaluations)" in text
    assert "| make + interpreter start | 1 | 0.5 |" in text
