"""`python -m training train` end to end on CPU: tiny-cpu trains, leaves a loadable adapter,
checkpoints, the resolved config and the run record; a killed run resumes; an unreachable hub
with a token set only turns pushes off, and the token is written nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import FAKE_HF_TOKEN, PYTHON, REPO, SAMPLE, read_jsonl, run_cli

from training.run_record import last_checkpoint


def test_tiny_run_leaves_adapter_checkpoints_config_and_record(tiny_run, processed_sample):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                 "config.yml", "run.json", "train.log", "loss.png"):  # fmt: skip
        assert (tiny_run / name).is_file(), name
    assert sorted(p.name for p in tiny_run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert list(tiny_run.rglob("events.out.tfevents.*")), "TensorBoard events"
    assert (tiny_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    config = yaml.safe_load((tiny_run / "config.yml").read_text())
    assert Path(config["datasets"][0]["path"]) == processed_sample / "train.jsonl"
    assert Path(config["test_datasets"][0]["path"]) == processed_sample / "validation.jsonl"
    assert Path(config["output_dir"]) == tiny_run
    assert config["max_steps"] == 4 and config["use_tensorboard"] is True
    assert "hub_model_id" not in config

    record = json.loads((tiny_run / "run.json").read_text())
    assert record["recipe"] == "tiny-cpu" and record["status"] == "finished"
    assert record["base_model"] == "models/built/tiny-llama"
    assert Path(record["test_file"]) == processed_sample / "test.jsonl"
    assert (
        record["system_prompt"]
        == read_jsonl(processed_sample / "test.jsonl")[0]["messages"][0]["content"]
    )
    assert record["train_seconds"] > record["trainer_runtime_seconds"] > 0
    assert record["finished"] and record["hub_repo"] is None
    assert record["hardware"]["cpu_count"] >= 1


def test_tiny_run_adapter_loads_and_generates(tiny_run, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, tiny_run)
    # The adapter was trained: LoRA B matrices start at zero and must have moved.
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    row = read_jsonl(REPO / "data" / "sample" / "sample_instruct.jsonl")[0]
    messages = [{"role": "user", "content": row["prompt"]}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_tiny_run_saves_the_training_chat_template(tiny_run):
    from axolotl.utils.chat_templates import get_chat_template
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tiny_run).chat_template == get_chat_template("llama3")
    # Completed after training (training/tokenizer_files.py): later loads parse tokenizer.json once.
    config = json.loads((tiny_run / "tokenizer_config.json").read_text())
    assert config["added_tokens_decoder"]


def test_unreachable_hub_warns_trains_locally_and_leaks_no_token(tiny_run):
    console = (tiny_run.parent / "console.txt").read_text()
    assert "unreachable or refused" in console and "pushes off" in console
    assert console.count("hub:") == 1, "said once"
    needle = FAKE_HF_TOKEN.encode()
    leaks = [p for p in tiny_run.parent.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert not leaks


def test_loss_history_covers_every_step(tiny_run):
    from training.run_plots import loss_history

    history = loss_history(tiny_run)
    assert sorted(history["train"]) == [1, 2, 3, 4]
    assert {2, 4} <= set(history["eval"])


def test_run_record_says_where_the_time_went(tiny_run):
    """run.json "phases": one timeline from the command's start, launcher and Axolotl process
    together: start-up, data, model, steps, every evaluation and checkpoint, the end."""
    record = json.loads((tiny_run / "run.json").read_text())
    names = [p["phase"] for p in record["phases"]]
    for phase in (
        "launcher start-up",
        "start-up: python + axolotl import",
        "data: config checks + tokenise + pack",
        "model: load + quantise + adapter",
        "optimizer steps",
        "best-model reload @ step 4",
        "final save: adapter + tokenizer + hub push",
        "axolotl process exit",
        "loss plot",
    ):
        assert phase in names, phase
    # The tiny run evaluates and saves at steps 2 and 4, and nowhere else (no step-0 eval).
    assert [n for n in names if n.startswith("evaluation")] == [
        "evaluation @ step 2",
        "evaluation @ step 4",
    ]
    assert [n for n in names if n.startswith("checkpoint save")] == [
        "checkpoint save @ step 2",
        "checkpoint save @ step 4",
    ]
    assert names.index("model: load + quantise + adapter") < names.index("evaluation @ step 2")
    total = sum(p["seconds"] for p in record["phases"])
    assert abs(total - record["command_seconds"]) < 0.5
    # The whole axolotl command's wall clock is inside the timeline.
    assert record["train_seconds"] <= record["command_seconds"]
    summary = record["phase_summary"]
    assert summary["evaluation"]["count"] == 2 and summary["optimizer steps"]["count"] == 2
    assert record["phase_facts"]["optimizer_steps"] == 4
    assert record["phase_facts"]["train_tokens_per_epoch"] > 0
    console = (tiny_run.parent / "console.txt").read_text()
    assert "where the" in console and "optimizer steps" in console


def test_console_shows_progress_losses_and_our_lines_and_the_log_keeps_everything(tiny_run):
    console = (tiny_run.parent / "console.txt").read_text()
    log = (tiny_run / "train.log").read_text()
    noise = "[axolotl.cli.config] config:"  # Axolotl's ~300-line config dump
    assert noise in log and noise not in console
    assert "{'loss'" in console and "{'eval_loss'" in console  # what a person watches for
    assert "%|" in console  # progress bars
    assert f"{tiny_run.name}/train.log (console: progress, losses, errors)" in console
    assert len(console.splitlines()) < len(log.splitlines()) / 2


def test_console_filter_keeps_a_traceback_whole():
    import io

    from training.console import Console

    out = io.StringIO()
    console = Console(out)
    for line in [
        "[2026-12-01 10:00:00] [INFO] [axolotl.train] loading\n",
        " 50%|#####     | 1/2 [00:01<00:01, 1.0it/s]\n",
        "{'loss': '1.5', 'epoch': '1'}\n",
        "Traceback (most recent call last):\n",
        '  File "x.py", line 1, in <module>\n',
        "ValueError: boom\n",
    ]:
        console.feed(line)
    console.close()
    shown = out.getvalue()
    assert "loading" not in shown
    assert "\r 50%|" in shown and "{'loss': '1.5'" in shown
    assert 'File "x.py", line 1' in shown and shown.rstrip().endswith("ValueError: boom")
    verbose = io.StringIO()
    Console(verbose, verbose=True).feed("[INFO] anything\n")
    assert verbose.getvalue() == "[INFO] anything\n"


@pytest.mark.slow
def test_packed_eval_on_a_16_row_validation_file_scores_the_same_loss(
    tiny_model, processed_sample, tmp_path
):
    """The GPU recipes' eval settings (packed eval rows, packs padded to sequence_len) on a
    validation file of 16 rows: the launcher trains and evaluates, and the eval loss equals the
    unpacked computation over the same rows and masked tokens (one pack of all 16 rows vs one
    padded batch of all 16 rows; learning rate 0, so both evaluate the same weights)."""
    validation = tmp_path / "validation-16.jsonl"
    rows = (processed_sample / "train.jsonl").read_text("utf-8").splitlines(keepends=True)[:16]
    validation.write_text("".join(rows), "utf-8")
    test_datasets = json.dumps(
        [{"path": str(validation), "ds_type": "json", "split": "train", "type": "chat_template",
          "field_messages": "messages", "roles_to_train": ["assistant"], "train_on_eos": "turn"}]
    )  # fmt: skip
    common = ["--max-steps", "1", "--override", "learning_rate=0", "--override", "eval_steps=1",
              "--override", "save_steps=1",
              "--override", f"test_datasets={test_datasets}"]  # fmt: skip
    settings = {
        "packed": ["sample_packing=true", "eval_sample_packing=true", "pad_to_sequence_len=true",
                   "sequence_len=4096", "micro_batch_size=1", "eval_batch_size=1"],
        "unpacked": ["sample_packing=false", "eval_sample_packing=false",
                     "pad_to_sequence_len=false", "sequence_len=4096", "eval_batch_size=16"],
    }  # fmt: skip
    losses = {}
    for name, overrides in settings.items():
        runs = tmp_path / name
        args = ["training", "train", "tiny-cpu", "--data", SAMPLE, "--processed",
                processed_sample, "--runs-dir", runs, *common]  # fmt: skip
        for item in overrides:
            args += ["--override", item]
        result = run_cli(args)
        assert result.returncode == 0, result.stdout[-4000:]
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
        state = json.loads((run_dir / "checkpoint-1" / "trainer_state.json").read_text())
        (losses[name],) = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
    assert losses["packed"] == pytest.approx(losses["unpacked"], rel=1e-4), losses


def _wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training ended (code {process.returncode}) before the kill")
        if time.monotonic() > deadline:
            raise AssertionError("no checkpoint in time")
        time.sleep(0.5)


def test_killed_run_resumes_from_its_last_checkpoint(tiny_model, processed_sample, tmp_path):
    runs = tmp_path / "runs"
    command = [
        PYTHON, "-m", "training", "train", "tiny-cpu",
        "--data", str(SAMPLE), "--processed", str(processed_sample), "--runs-dir", str(runs),
        "--max-steps", "6", "--override", "save_steps=2", "--override", "eval_steps=2",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # Killed like a crash or a lost machine: SIGKILL to launcher and trainer, no cleanup.
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: any(runs.glob("*/checkpoint-2/trainer_state.json")), 600, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    (run_dir,) = list(runs.iterdir())
    killed_at = last_checkpoint(run_dir)
    assert killed_at is not None and not (run_dir / "adapter_model.safetensors").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    result = run_cli(
        ["training", "train", "tiny-cpu", "--resume", run_dir, "--data", SAMPLE,
         "--processed", processed_sample],
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert f"resuming from {killed_at}" in result.stdout or killed_at.name in result.stdout
    assert list(runs.iterdir()) == [run_dir], "same directory, no new run"
    state = json.loads((last_checkpoint(run_dir) / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == list(range(1, 7)), "continued where it stopped: each step trained once"
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["resume_from_checkpoint"].endswith(killed_at.name)


def test_bad_recipe_and_missing_data_fail_clearly(tmp_path):
    result = run_cli(["training", "train", "no-such-recipe", "--processed", tmp_path / "p"])
    assert result.returncode != 0 and "unknown recipe 'no-such-recipe'" in result.stdout
    assert "tiny-cpu" in result.stdout  # lists what exists
    result = run_cli(
        ["training", "train", "tiny-cpu", "--data", tmp_path / "absent.jsonl",
         "--processed", tmp_path / "p", "--runs-dir", tmp_path / "runs"]
    )  # fmt: skip
    assert result.returncode != 0 and "absent.jsonl: input data not found" in result.stdout
    assert not (tmp_path / "runs").exists(), "no run directory for a run that never started"


@pytest.mark.parametrize("item", ["max_steps", "=3"])
def test_override_needs_key_equals_value(item):
    from training.config import parse_override
    from training.errors import TrainError

    with pytest.raises(TrainError, match="KEY=VALUE"):
        parse_override(item)


class _RefusingHub(BaseHTTPRequestHandler):
    """A hub that knows the user and creates repos, then refuses every upload."""

    seen_tokens: set[str] = set()

    def _answer(self, code: int, body: dict) -> None:
        self.seen_tokens.add(self.headers.get("authorization", ""))
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("/api/whoami"):
            self._answer(200, {"name": "tester", "type": "user", "orgs": []})
        else:
            self._answer(403, {"error": "refused by the test hub"})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/api/repos/create":
            self._answer(200, {"url": f"http://{self.headers['host']}/tester/repo", "name": "x"})
        else:
            self._answer(403, {"error": "refused by the test hub"})

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def test_hub_that_refuses_uploads_still_finishes_the_run(tiny_model, processed_sample, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_TOKEN=FAKE_HF_TOKEN, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
    try:
        result = run_cli(
            ["training", "train", "tiny-cpu", "--data", SAMPLE, "--processed", processed_sample,
             "--runs-dir", runs, "--max-steps", "2", "--override", "save_steps=2",
             "--override", "eval_steps=2"],
            env=env,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout[-4000:]
    (run_dir,) = list(runs.iterdir())
    repo = f"tester/{run_dir.name}"
    endpoint = env["HF_ENDPOINT"]
    assert f"hub: pushing checkpoints and the final adapter to {endpoint}/{repo}" in result.stdout
    assert "final hub push failed" in result.stdout
    record = json.loads((run_dir / "run.json").read_text())
    assert record["hub_repo"] == repo and record["status"] == "finished, final hub push failed"
    assert yaml.safe_load((run_dir / "config.yml").read_text())["hub_model_id"] == repo
    assert (run_dir / "adapter_model.safetensors").is_file() and (run_dir / "checkpoint-2").is_dir()
    assert f"Bearer {FAKE_HF_TOKEN}" in _RefusingHub.seen_tokens, "the token was offered to the hub"
    leaks = [p for p in runs.rglob("*") if p.is_file() and FAKE_HF_TOKEN.encode() in p.read_bytes()]
    assert not leaks and FAKE_HF_TOKEN not in result.stdout


# ---- the model builder (python -m training build-tiny / build-model) -------------------------

ARCHITECTURES = sorted((REPO / "models" / "architectures").glob("*.json"))


@pytest.mark.parametrize("path", ARCHITECTURES, ids=lambda p: p.stem)
def test_architecture_builds_the_published_model_shape(path):
    """Random-init models have the real model's parameter count, hence its compute per token."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.build_model import load_arch

    arch = load_arch(path)
    values = dict(arch["config"])
    model_type = values.pop("model_type")
    architectures = values.pop("architectures")
    with torch.device("meta"):  # shapes only
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **values))
    assert architectures == [type(model).__name__]
    assert sum(p.numel() for p in model.parameters()) == arch["parameters"]
    assert model.get_input_embeddings().num_embeddings == arch["config"]["vocab_size"]
    if arch["hf_id"]:
        assert arch["source"] and arch["tokenizer"]["eot_token"]


def test_tiny_build_is_deterministic_and_matches_the_shared_one(tiny_model, tmp_path):
    from training.build_model import TINY_ARCH, build

    again = build(TINY_ARCH, tmp_path / "tiny", seed=1234, device="cpu")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "build.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    record = json.loads((again / "build.json").read_text())
    assert record["tokenizer_data"][0]["path"] == "data/sample/sample_instruct.jsonl"
    assert record["parameters"] == 229696 and record["model_vocab_size"] == 2048


def test_tiny_tokenizer_has_llama3_specials_and_template(tiny_model):
    from axolotl.utils.chat_templates import get_chat_template
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer.chat_template == get_chat_template("llama3")
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|begin_of_text|>", "<|eot_id|>")
    for special in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special
    ids = tokenizer("List of extracted chemicals:")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # like Llama-3's, it adds <|begin_of_text|>
    assert tokenizer.decode(ids[1:]) == "List of extracted chemicals:"


def test_builder_errors_name_the_file_and_line(tmp_path):
    from training.build_model import BuildError, corpus_texts, load_arch

    with pytest.raises(BuildError, match="architecture file not found.*tiny-llama"):
        load_arch("no-such-model")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": broken\n')
    with pytest.raises(BuildError, match=r"bad.jsonl: line 2: not valid JSON"):
        corpus_texts([bad])


def test_wandb_only_with_wandb_project_and_offline_without_a_key(monkeypatch, tmp_path):
    from training.config import resolve_config

    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu.yml").read_text())
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    plain = resolve_config(recipe, tmp_path / "run", tmp_path, 1, None)
    assert not any(key.startswith("wandb_") for key in plain)
    monkeypatch.setenv("WANDB_PROJECT", "cdr")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    tracked = resolve_config(recipe, tmp_path / "run", tmp_path, 1, None)
    assert (tracked["wandb_project"], tracked["wandb_mode"]) == ("cdr", "offline")
    assert tracked["use_tensorboard"] is True


@pytest.mark.parametrize(
    ("gpus", "current", "expected"),
    [
        (1, None, "0"),  # one process on a multi-GPU machine sees one GPU, not a split model
        (2, None, "0,1"),
        (1, "3,5", "3"),  # the user's choice, first N of it
        (2, "3, 5, 7", "3,5"),
        (4, "2", "2"),  # fewer visible than asked: accelerate reports it, we don't invent ids
        (1, "", ""),  # hidden on purpose stays hidden
    ],
)
def test_a_run_sees_only_the_gpus_it_was_given(gpus, current, expected):
    from training.launch import visible_devices

    assert visible_devices(gpus, current) == expected
