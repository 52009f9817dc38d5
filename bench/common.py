"""Plumbing shared by the benchmark subcommands: paths, subprocesses, environment, results."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, now, sha256_file
from training.build_model import TINY_OUT
from training.errors import TrainError
from training.hardware import package_versions
from training.hub import hub_token
from training.launch import tee
from training.recipes import RUNS, load_recipe, recipe_names

RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "work"  # git-ignored: built models, logs, smoke results
ARCH_DIR = REPO / "models" / "architectures"
PACKAGES = (
    "torch", "transformers", "peft", "axolotl", "bitsandbytes", "accelerate", "trl",
    "datasets", "liger-kernel", "deepspeed", "vllm",
)  # fmt: skip
PLUGIN = "bench.axolotl_plugin.BenchTimingPlugin"


class BenchError(RuntimeError):
    """A step of a benchmark failed; the message says which and where its log is."""


def versions() -> dict[str, str | None]:
    return package_versions(PACKAGES)


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "date": now(),
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "versions": versions(),
    }


def shown(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """A command line as a person would type it (python for this interpreter, env vars first)."""
    words = ["python" if w == sys.executable else w for w in cmd]
    prefix = [f"{k}={v}" for k, v in (env or {}).items()]
    return shlex.join(prefix + words)


class Runner:
    """Runs the steps of one benchmark, streaming their output to the console and to the log
    files (bench/work/logs/<name>.log, and a mirror in --out-dir so a failed or stopped call
    still brings its log back)."""

    def __init__(self, *logs: Path) -> None:
        self.logs = logs
        self.log = logs[0]
        self.commands: list[str] = []
        self.secrets = [token] if (token := hub_token()) else []
        for log in logs:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("", "utf-8")

    def _write(self, text: str, logs: tuple[Path, ...] | None = None) -> None:
        for log in self.logs if logs is None else logs:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(text)

    def _show(self, line: str) -> None:
        sys.stdout.write(line)
        self._write(line, self.logs[1:])  # the first log is tee's own

    def __call__(self, cmd: list[str], env: dict[str, str] | None = None):
        """Run one step from the repo root; raises BenchError if it fails."""
        line = shown(cmd, env)
        self.commands.append(line)
        full_env = {**os.environ, **(env or {})}
        # Our plugin and modules must import in every process the launcher starts.
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
        )
        started = time.perf_counter()
        print(f"$ {line}", flush=True)
        self._write(f"\n$ {line}\n")
        # The launcher's tee: every line to the log and the console, any hub token scrubbed.
        code = tee(cmd, self.log, self.secrets, env=full_env, show=self._show)
        seconds = time.perf_counter() - started
        self._write(f"[exit {code} after {seconds:.1f} s]\n")
        print(f"[exit {code} after {seconds:.1f} s]", flush=True)
        if code != 0:
            raise BenchError(f"step failed (exit {code}): {line}\n  log: {self.log}")
        return seconds


def read_recipe(recipe: str) -> tuple[Path, dict[str, Any]]:
    """(recipe file, its config) as the launcher finds them; BenchError when there is none."""
    try:
        return load_recipe(recipe)
    except TrainError as error:
        raise BenchError(str(error)) from None


def gpu_recipes() -> list[str]:
    """Every recipe except the CPU one, in name order."""
    return recipe_names(include_tiny=False)


def arch_for(base_model: str) -> Path:
    """The architecture file whose hf_id is this base model."""
    for path in sorted(ARCH_DIR.glob("*.json")):
        if json.loads(path.read_text("utf-8")).get("hf_id") == base_model:
            return path
    raise BenchError(f"no models/architectures/*.json has hf_id {base_model!r}")


def ensure_processed(data: Path, processed: Path) -> None:
    """Prepare the data when missing or stale, exactly as the training launcher decides it."""
    from training.data import ensure_processed as launcher_ensure_processed

    launcher_ensure_processed(REPO / data, REPO / processed)  # relative paths: from the repo


def ensure_model(
    run: Runner, recipe_config: dict[str, Any], processed: Path, random_init: bool
) -> str:
    """The model to train: the recipe's own, or a random-init build of its architecture.

    The build carries the family's real tokenizer where its package is installed; it is reused
    when its tokenizer is of that same kind and was trained (or measured) on this train split.
    """
    base = str(recipe_config["base_model"])
    if (REPO / base).resolve() == TINY_OUT.resolve():
        if not (TINY_OUT / "model.safetensors").is_file():
            run([sys.executable, "-m", "training", "build-tiny"])
        return base
    if not random_init or (REPO / base).exists():
        return base
    arch = arch_for(base)
    out = WORK / "models" / arch.stem
    train = REPO / processed / "train.jsonl"
    record = out / "build.json"
    if record.is_file():
        from training.build_model import load_arch
        from training.shipped_tokenizers import shipped_file

        built = json.loads(record.read_text("utf-8"))
        source = "shipped" if shipped_file(load_arch(arch)) else "trained"
        same_tokenizer = built.get("tokenizer", {}).get("source") == source
        same_data = [d.get("sha256") for d in built.get("tokenizer_data", [])] == [
            sha256_file(train)
        ]
        if same_tokenizer and same_data:
            print(f"reusing {out.relative_to(REPO)}", flush=True)
            return str(out.relative_to(REPO))
    run([sys.executable, "-m", "training", "build-model", "--arch", str(arch.relative_to(REPO)),
         "--out", str(out.relative_to(REPO)), "--data", str(train)])  # fmt: skip
    return str(out.relative_to(REPO))


def drop_model(model: str) -> None:
    """Free disk after a big random-init build (only ever inside bench/work)."""
    path = (REPO / model).resolve()
    if path.is_relative_to(WORK.resolve()) and path.is_dir():
        shutil.rmtree(path)


def _safetensors_parameters(model_dir: Path) -> int | None:
    """Parameters stored in the model's safetensors files (a tied matrix is stored once)."""
    total, files = 0, sorted(model_dir.glob("*.safetensors"))
    for path in files:
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        total += sum(prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total if files else None


def model_info(model: str) -> dict[str, Any]:
    """Shape of the model as trained: its config, parameter count and (random-init) build record."""
    path = REPO / model
    info: dict[str, Any] = {"path_or_id": model}
    if not path.is_dir():
        return info
    config = json.loads((path / "config.json").read_text("utf-8"))
    keys = (
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "max_position_embeddings",
    )
    info["config"] = {k: config[k] for k in keys if k in config}
    info["parameters"] = _safetensors_parameters(path)
    if (path / "build.json").is_file():
        build = json.loads((path / "build.json").read_text("utf-8"))
        info["random_init"] = True
        info["architecture_of"] = build.get("hf_id")
        info["tokenizer_vocab_size"] = build.get("tokenizer_vocab_size")
        info["tokenizer"] = build.get("tokenizer") or {"source": "trained"}
        info["chars_per_token"] = build.get("chars_per_token")
        if build.get("hf_id"):
            info["note"] = (
                "random weights with the real architecture: compute per token equals the real "
                "model's"
            )
    return info


def new_run_dirs(recipe: str, before: set[Path]) -> list[Path]:
    name = Path(recipe).stem
    return sorted(p for p in RUNS.glob(f"{name}-*") if p.is_dir() and p not in before)


def runs_of(recipe: str) -> set[Path]:
    return {p for p in RUNS.glob(f"{Path(recipe).stem}-*") if p.is_dir()}


@dataclass
class LoadedRun:
    """A training run ready to decode with, loaded as `eval generate` loads it."""

    target: Any  # eval.generate.Target
    tokenizer: Any
    rows: list[dict[str, Any]]  # the test rows to generate for
    rows_in_split: int
    prompts: list[list[int]]  # their prompts' token ids, in row order
    model: Any  # bf16 on the GPU, LoRA merged
    stops: list[int]
    load_seconds: float  # the model (and its adapter) onto the device


def load_run(run_dir: Path, limit: int | None = None) -> LoadedRun:
    """The run's tokenizer, first `limit` test rows (None: all) and model, with the inference
    package's loaders (`python -m bench.decoding` and `bench.profile_generate` measure on top)."""
    from eval.generate import load_test_rows, resolve_run
    from inference.load import load_model
    from inference.run import encode_prompts, load_tokenizer, stop_token_ids

    target = resolve_run(run_dir, None, merged=False)
    tokenizer = load_tokenizer(target)
    rows, rows_in_split = load_test_rows(target.test_file, limit)
    started = time.perf_counter()
    model = load_model(target.model, target.adapter, tokenizer)
    load_seconds = time.perf_counter() - started
    return LoadedRun(
        target=target,
        tokenizer=tokenizer,
        rows=rows,
        rows_in_split=rows_in_split,
        prompts=encode_prompts(tokenizer, rows),
        model=model,
        stops=stop_token_ids(tokenizer, model.generation_config),
        load_seconds=load_seconds,
    )


def write_result(name: str, data: dict[str, Any], results_dir: Path, out_dir: Path | None) -> Path:
    """bench/results/<name>.json (or the smoke folder), plus a copy in --out-dir."""
    from bench.metrics import write_json

    path = write_json(results_dir / f"{name}.json", data)
    if out_dir:
        write_json(out_dir / f"{name}.json", data)
    print(f"results: {path}" + (f" (copy in {out_dir})" if out_dir else ""), flush=True)
    return path


def matmul_tflops(n: int = 8192, repeats: int = 20) -> float | None:
    """Measured bf16 matrix-multiply rate of this GPU (median of timed products), or None on CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del a, b
    torch.cuda.empty_cache()
    return round(2 * n**3 / sorted(times)[len(times) // 2] / 1e12, 1)
