"""F1 during training (eval.training_f1): logged at every evaluation, the best-F1 checkpoint kept,
the same answers and scores as `python -m eval generate` on that checkpoint, a deterministic
task-stratified subset, and the rows shared out over ranks and gathered back."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, closed_port, read_jsonl, run_cli

from eval.training_f1 import METRIC_NAMES, PREDICTIONS_DIR, flat_metrics
from eval.training_f1_rows import merge_shards, select_rows, shard_indices, task_quotas
from preprocessing.task import TASKS, task_of

F1 = "eval_normalized_micro_f1"
# What `make eval` reproduces of an evaluation (not its timings or how its decoding was batched).
DECODING = ("f1_seconds", "f1_generated_tokens", "f1_decode_steps", "f1_rows_in_flight",
            "f1_prefill_seconds", "f1_decode_seconds")  # fmt: skip
SCORES = [f"eval_{name}" for name in METRIC_NAMES if name not in DECODING]


def evaluations(run_dir: Path) -> list[dict]:
    """The eval entries of the run's last trainer_state.json."""
    last = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "eval_loss" in entry]


def test_tiny_run_logs_f1_at_every_evaluation(tiny_run, processed_sample):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.run_plots import loss_history

    validation_rows = len(read_jsonl(processed_sample / "validation.jsonl"))
    logged = evaluations(tiny_run)
    assert [entry["step"] for entry in logged] == [2, 4]
    for entry in logged:
        assert {f"eval_{name}" for name in METRIC_NAMES} <= set(entry)
        assert entry["eval_f1_rows"] == validation_rows
        assert 0.0 <= entry[F1] <= 1.0
        answers = read_jsonl(tiny_run / PREDICTIONS_DIR / f"step-{entry['step']}.jsonl")
        assert len(answers) == validation_rows and all("prediction" in a for a in answers)
        assert entry["eval_f1_generated_tokens"] == sum(a["generated_tokens"] for a in answers)
        assert entry["eval_f1_decode_steps"] >= max(a["generated_tokens"] for a in answers) - 1

    scalars = {}
    for events in tiny_run.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "eval/normalized_micro_f1" in accumulator.Tags()["scalars"]:
            scalars |= {e.step: e.value for e in accumulator.Scalars("eval/normalized_micro_f1")}
    assert scalars == pytest.approx({entry["step"]: entry[F1] for entry in logged})

    record = json.loads((tiny_run / "run.json").read_text())
    assert [(e["step"], e[F1], e["eval_loss"]) for e in record["evaluations"]] == [
        (e["step"], e[F1], e["eval_loss"]) for e in logged
    ]
    assert (tiny_run / "loss.png").is_file()
    assert loss_history(tiny_run)[F1] == pytest.approx({e["step"]: e[F1] for e in logged})
    console = (tiny_run.parent / "console.txt").read_text()
    assert "eval F1 @ step 2: 100%" in console and "eval F1 @ step 4: 100%" in console


def test_final_adapter_is_the_best_f1_checkpoint(tiny_run):
    from safetensors.torch import load_file

    logged = evaluations(tiny_run)
    best = logged[0]
    for entry in logged[1:]:  # greater is better; a tie keeps the earlier checkpoint
        best = entry if entry[F1] > best[F1] else best
    last = max(tiny_run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{best['step']}"
    assert state["best_metric"] == best[F1]

    final = load_file(tiny_run / "adapter_model.safetensors")
    kept = load_file(tiny_run / f"checkpoint-{best['step']}" / "adapter_model.safetensors")
    assert final.keys() == kept.keys()
    assert all((final[name] == kept[name]).all() for name in final)
    # The lowest eval loss is the last step here: selecting by loss would keep another one.
    assert min(logged, key=lambda e: e["eval_loss"])["step"] != best["step"]

    record = json.loads((tiny_run / "run.json").read_text())
    assert record["kept_checkpoint"] == {
        "checkpoint": f"checkpoint-{best['step']}",
        "step": best["step"],
        "metric": F1,
        "value": best[F1],
        "greater_is_better": True,
        "evaluations": len(logged),
    }
    card = (tiny_run / "README.md").read_text()
    assert f"`checkpoint-{best['step']}` (step {best['step']}): the highest `{F1}`" in card


def test_in_training_f1_equals_eval_generate_on_the_same_checkpoint(
    tiny_run, processed_sample, tmp_path
):
    """checkpoint-4 (the last evaluation) through `python -m eval generate` on the validation
    rows: the same answers, token for token, and the same scores as logged in training."""
    step = 4
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_run / f"checkpoint-{step}", checkpoint)
    shutil.copy(tiny_run / "config.yml", checkpoint / "config.yml")  # names the base model
    validation = processed_sample / "validation.jsonl"
    result = run_cli(
        ["eval", "generate", "--run", checkpoint, "--split-file", validation, "--backend", "hf"]
    )
    assert result.returncode == 0, result.stdout[-3000:]

    fields = ("prompt", "prediction", "finish_reason", "generated_tokens")
    in_training = read_jsonl(tiny_run / PREDICTIONS_DIR / f"step-{step}.jsonl")
    generated = read_jsonl(checkpoint / "eval" / "predictions.jsonl")
    assert [[row[f] for f in fields] for row in generated] == [
        [row[f] for f in fields] for row in in_training
    ]
    metrics = json.loads((checkpoint / "eval" / "metrics.json").read_text())
    (logged,) = [e for e in evaluations(tiny_run) if e["step"] == step]
    expected = {f"eval_{k}": v for k, v in flat_metrics(metrics).items()}
    expected |= {
        "eval_f1_rows": metrics["rows_evaluated"],
        "eval_f1_hit_max_new_tokens": metrics["hit_max_new_tokens"],
    }
    assert {name: logged[name] for name in SCORES} == expected


# ---- which rows -------------------------------------------------------------------------------


def test_subset_is_deterministic_and_task_stratified(processed_sample):
    rows = read_jsonl(processed_sample / "train.jsonl")  # 48 rows, 16 per task
    chosen = select_rows(rows, 12, seed=0)
    assert chosen == sorted(chosen) and len(set(chosen)) == 12
    tasks = [task_of(rows[i]["prompt"]) for i in chosen]
    assert {task: tasks.count(task) for task in TASKS} == dict.fromkeys(TASKS, 4)
    # The same rows whatever the file's order; another seed picks others.
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    again = [shuffled[i]["prompt"] for i in select_rows(shuffled, 12, seed=0)]
    assert sorted(again) == sorted(rows[i]["prompt"] for i in chosen)
    assert select_rows(rows, 12, seed=1) != chosen
    assert select_rows(rows, None) == select_rows(rows, 99) == list(range(48))
    # Uneven tasks: shares in proportion, largest remainders, ties in TASKS order.
    assert task_quotas({"chemical": 5, "disease": 3, "relation": 2}, 5) == {
        "chemical": 3,
        "disease": 1,
        "relation": 1,
    }


def test_eval_f1_rows_key_reaches_the_plugin(tiny_model, processed_sample):
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from eval.training_f1 import InTrainingF1

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    validation = read_jsonl(processed_sample / "validation.jsonl")
    cfg = DictDefault(
        test_datasets=[{"path": str(processed_sample / "validation.jsonl")}],
        eval_f1_rows=3,
        eval_f1_seed=0,
        output_dir="unused",
    )
    f1 = InTrainingF1(cfg, tokenizer)
    assert sorted(task_of(r["prompt"]) for r in f1.rows) == sorted(TASKS)
    assert [r["prompt"] for r in f1.rows] == [
        validation[i]["prompt"] for i in select_rows(validation, 3, 0)
    ]
    assert len(f1.prompts) == 3 and f1.max_new_tokens >= 32


def test_recipe_keys_are_validated_by_axolotl(tiny_model):
    from test_recipes import validated

    recipe = REPO / "recipes" / "tiny-cpu.yml"
    cfg = validated(recipe, tiny_model)
    assert cfg.eval_f1 is True and cfg.metric_for_best_model == F1
    with pytest.raises(ValueError, match="eval_f1_rows"):
        validated(recipe, tiny_model, eval_f1_rows=0)
    with pytest.raises(ValueError, match="only computed with eval_f1: true"):
        validated(recipe, tiny_model, eval_f1=False)
    assert validated(recipe, tiny_model, eval_f1=False, metric_for_best_model="eval_loss")


def test_missing_validation_file_is_one_line_error(tmp_path, capsys):
    from axolotl.utils.dict import DictDefault

    from eval.training_f1 import TrainingF1Plugin

    missing = tmp_path / "validation.jsonl"
    cfg = DictDefault(eval_f1=True, test_datasets=[{"path": str(missing)}], output_dir="x")
    trainer = type("Trainer", (), {"processing_class": None})()
    with pytest.raises(SystemExit) as stopped:
        TrainingF1Plugin().post_trainer_create(cfg, trainer)
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: eval_f1: {missing}: ") and "no file" in line


def test_generation_leaves_training_state_as_it_was(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from eval.training_f1 import generation_state

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False  # as training sets it
    model.train()
    with generation_state(model, training_after=True):
        assert not model.training
        model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert model.training and model.is_gradient_checkpointing
    assert model.config.use_cache is False
    assert all(p.grad is None for p in model.parameters())


# ---- several ranks ----------------------------------------------------------------------------


def test_shards_cover_every_row_once_and_merge_back_in_order():
    for count, world in ((7, 3), (2, 4), (0, 2)):
        shards = [shard_indices(count, rank, world) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(count))
        results = [[(i, f"answer {i}") for i in reversed(shard)] for shard in shards]
        assert merge_shards(results, count) == [f"answer {i}" for i in range(count)]
    with pytest.raises(ValueError, match="never came back"):
        merge_shards([[(0, "a")]], 2)
    with pytest.raises(ValueError, match="two ranks"):
        merge_shards([[(0, "a")], [(0, "b")]], 1)


GATHER_SCRIPT = """
import json, sys
import torch.distributed as dist
from eval.training_f1_rows import broadcast_from_first, gather_shards, shard_indices
rank = int(sys.argv[1])
dist.init_process_group("gloo", rank=rank, world_size=2)
mine = [(i, f"answer {i} from rank {rank}") for i in shard_indices(5, rank, 2)]
gathered = gather_shards(mine, 5)
metrics = broadcast_from_first({"f1": 0.5, "scored_by": rank} if rank == 0 else None)
print(json.dumps({"gathered": gathered, "metrics": metrics}))
dist.destroy_process_group()
"""


def test_two_process_gloo_group_gathers_rows_and_shares_rank0_metrics():
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(closed_port())}
    ranks = [
        subprocess.Popen(
            [PYTHON, "-c", GATHER_SCRIPT, str(rank)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = []
    for process in ranks:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    expected = [f"answer {i} from rank {i % 2}" for i in range(5)]
    assert [o["gathered"] for o in outputs] == [expected, expected]
    assert [o["metrics"] for o in outputs] == [{"f1": 0.5, "scored_by": 0}] * 2
