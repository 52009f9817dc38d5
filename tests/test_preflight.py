"""The launcher's checks before a run directory exists: a GPU recipe on a machine that cannot run
it stops within seconds with what to do, writing nothing; tiny-cpu needs none of it."""

from __future__ import annotations

import os
import time

import conftest
import pytest
import yaml

from training import preflight
from training.preflight import Gpu, Machine

RECIPES = conftest.REPO / "recipes"
GPU_RECIPES = sorted(p.stem for p in RECIPES.glob("*.yml") if p.stem != "tiny-cpu")


def recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yml").read_text())


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_gpu_recipe_on_this_cpu_machine_stops_at_once_and_writes_nothing(name, tmp_path):
    if preflight.probe_machine(check_bnb=False).gpus:
        pytest.skip("this machine has a GPU")
    started = time.perf_counter()
    result = conftest.run_cli(
        ["training", "train", name, "--data", conftest.SAMPLE,
         "--processed", tmp_path / "processed", "--runs-dir", tmp_path / "runs"],
        timeout=60,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    assert f"error: {name} cannot train on this machine (nothing was written)" in result.stdout
    assert "needs a CUDA GPU (load_in_4bit" in result.stdout
    assert "On CPU use RECIPE=tiny-cpu" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no run directory, no processed data
    assert elapsed < 10, f"{elapsed:.1f} s"  # python + yaml; no torch, no Axolotl, no network


def test_overrides_decide_whether_a_recipe_needs_cuda():
    tiny = recipe("tiny-cpu")
    assert preflight.cuda_reasons(tiny) == []
    for name in GPU_RECIPES:
        assert "load_in_4bit" in preflight.cuda_reasons(recipe(name))
    planned = preflight.planned_config(tiny, None, [("bf16", True), ("lora_mlp_kernel", True)])
    assert preflight.cuda_reasons(planned) == ["bf16", "LoRA kernels (Triton)"]
    assert preflight.planned_config(tiny, "org/other", [])["base_model"] == "org/other"


A100 = Gpu("NVIDIA A100-SXM4-80GB", (8, 0), free_gib=79.0, bf16=True)
T4 = Gpu("Tesla T4", (7, 5), free_gib=14.5, bf16=False)
BUSY = Gpu("NVIDIA A100-SXM4-80GB", (8, 0), free_gib=4.0, bf16=True)


@pytest.mark.parametrize(
    "machine, gpus, expected",
    [
        pytest.param(Machine(why_none="no GPU driver"), 1, ["and there is none: no GPU driver"],
                     id="no-gpu"),
        pytest.param(Machine([T4], bnb_cuda=True), 1,
                     ["tf32: true needs an Ampere or newer GPU; Tesla T4 is compute capability"],
                     id="tf32-on-turing"),
        pytest.param(Machine([A100], bnb_cuda=False, bnb_detail="bitsandbytes runs on CPU"), 1,
                     ["4/8-bit loading needs bitsandbytes with CUDA: bitsandbytes runs on CPU"],
                     id="bnb-without-cuda"),
        pytest.param(Machine([BUSY], bnb_cuda=True), 1,
                     ["has 4.0 GiB free; llama3b-qlora peaks at about 6 GiB"], id="low-memory"),
        pytest.param(Machine([A100], bnb_cuda=True), 2, ["--gpus 2 asked for, 1 visible"],
                     id="too-few-gpus"),
        pytest.param(Machine([A100, A100], bnb_cuda=True), 2, [], id="fine"),
    ],
)  # fmt: skip
def test_gpu_problems(machine, gpus, expected):
    problems = preflight.gpu_problems(recipe("llama3b-qlora"), "llama3b-qlora", gpus, machine)
    assert len(problems) == len(expected), problems
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem


def test_bf16_true_needs_bf16_support():
    config = {**recipe("llama3b-qlora"), "bf16": True, "tf32": False}
    (problem,) = preflight.gpu_problems(config, "x", 1, Machine([T4], bnb_cuda=True))
    assert "bf16: true needs bf16 support, which Tesla T4 lacks" in problem


def test_tiny_cpu_passes_without_probing_the_machine(monkeypatch):
    def no_probe(check_bnb: bool) -> Machine:
        raise AssertionError("a CPU recipe must not look for GPUs")

    monkeypatch.setattr(preflight, "probe_machine", no_probe)
    preflight.check(recipe("tiny-cpu"), "tiny-cpu", 1, token=None)  # raises nothing


@pytest.mark.parametrize(
    "base, offline, token, expected",
    [
        ("models/built/tiny-llama", True, None, None),
        ("meta-llama/Llama-3.2-3B-Instruct", True, "hf_x",
         "not in the Hugging Face cache and HF_HUB_OFFLINE=1: download it once online"),
        ("meta-llama/Llama-3.2-3B-Instruct", False, None,
         "is gated and no token is set: accept its licence on https://huggingface.co/meta-llama"),
        ("Qwen/Qwen2.5-7B-Instruct", False, None, None),  # not gated; the probe is skipped here
    ],
)  # fmt: skip
def test_base_model_problems(monkeypatch, base, offline, token, expected):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    problems = preflight.base_model_problems(base, token, online_probe=False)
    if expected is None:
        assert problems == []
    else:
        (problem,) = problems
        assert expected in problem
        assert token is None or token not in problem


def test_hub_probe_reports_an_unreachable_hub_in_one_line(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{conftest.closed_port()}")
    (problem,) = preflight.base_model_problems("Qwen/Qwen2.5-7B-Instruct", "hf_secret", True)
    assert "is not cached and cannot be fetched: hub unreachable" in problem
    assert "hf_secret" not in problem and "\n" not in problem


def test_the_launcher_reports_it_as_an_error_not_a_traceback(tmp_path, capsys):
    if preflight.probe_machine(check_bnb=False).gpus:
        pytest.skip("this machine has a GPU")
    from training.train import train

    runs = tmp_path / "runs"
    assert train("qwen7b-qlora", conftest.SAMPLE, tmp_path / "processed", runs_dir=runs) is None
    assert "error: qwen7b-qlora cannot train on this machine" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "base, token, expected",
    [
        ("meta-llama/Llama-3.2-3B-Instruct", "hf_granted", None),
        ("meta-llama/Llama-3.2-3B-Instruct", "hf_not_granted",
         "is gated and this token has no access: accept its licence on"),
        ("Qwen/Qwen2.5-7B-Instruct", None, None),
        ("someone/no-such-model", "hf_granted", "cannot be fetched: not found"),
    ],
)  # fmt: skip
def test_hub_probe_against_a_stand_in_hub(monkeypatch, base, token, expected):
    from hub_standin import HubStandIn
    from huggingface_hub import constants

    models = {"meta-llama/Llama-3.2-3B-Instruct": {"hf_granted"}, "Qwen/Qwen2.5-7B-Instruct": None}
    with HubStandIn("tester", models) as hub:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        problems = preflight.base_model_problems(base, token, online_probe=True)
    if expected is None:
        assert problems == []
    else:
        (problem,) = problems
        assert expected in problem and (token is None or token not in problem)


def test_gpus_are_read_with_nvidia_smi_without_a_cuda_context(tmp_path, monkeypatch):
    """The launcher reads GPUs through nvidia-smi (no torch, no CUDA context of its own while
    Axolotl trains), respecting CUDA_VISIBLE_DEVICES."""
    fake = tmp_path / "nvidia-smi"
    listing = "0, NVIDIA H200, 143000, 9.0\\n1, Tesla T4, 15000, 7.5\\n"
    fake.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    h200, t4 = preflight.nvidia_smi_gpus()
    assert (h200.name, h200.capability, h200.bf16) == ("NVIDIA H200", (9, 0), True)
    assert round(h200.free_gib, 1) == 139.6 and (t4.capability, t4.bf16) == ((7, 5), False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [g.name for g in preflight.nvidia_smi_gpus()] == ["Tesla T4"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8c2f")
    assert preflight.nvidia_smi_gpus() is None  # UUIDs: torch resolves them


def test_bitsandbytes_library_is_checked_on_disk_without_importing_torch(monkeypatch):
    # The check runs before every GPU training: it must find the library bitsandbytes would
    # load for torch's CUDA build, and name what is missing when there is none.
    monkeypatch.delenv("BNB_CUDA_VERSION", raising=False)
    monkeypatch.setattr(preflight, "_torch_cuda_version", lambda: "13.0")
    assert preflight._bitsandbytes_cuda_library() == (True, "")
    monkeypatch.setattr(preflight, "_torch_cuda_version", lambda: "9.9")
    ok, detail = preflight._bitsandbytes_cuda_library()
    assert not ok and "libbitsandbytes_cuda99" in detail and "CUDA 9.9" in detail
    monkeypatch.setattr(preflight, "_torch_cuda_version", lambda: None)
    assert preflight._bitsandbytes_cuda_library() == (
        False,
        "the installed torch is not a CUDA build",
    )
