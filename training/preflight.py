"""Before a run directory exists: can this machine train this recipe at all?

A GPU recipe on a machine that cannot run it used to fail inside Axolotl after 15-30 s (an OSError
while downloading offline, "--tf32 requires Ampere", a bitsandbytes CUDA error), leaving a failed
run directory behind. This checks, in about a second and before anything is written:

- a recipe that needs CUDA (4/8-bit loading, bf16/fp16/tf32, Axolotl's Triton LoRA kernels) has
  as many CUDA GPUs as asked for, with bf16/TF32 support where the recipe turns them on, a
  bitsandbytes with its CUDA library for 4/8-bit loading, and free memory for the recipe's
  measured peak;
- the base model is a local directory, is in the Hugging Face cache, or can be fetched: not
  offline, and for a gated model with a token that has been granted access.

Every problem found is listed, each with what to do. The tiny-cpu recipe needs none of this.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocessing.files import REPO
from training.recipes import TINY_RECIPE

# The recipe's GPU memory peak (GiB, reserved by torch) measured by `make bench-recipes` on an
# H100 (bench/results/recipe-<name>.json: train.timing.peak_reserved_gib), and for llama3b-qlora
# by the whole run (`make bench-run`, bench/results/run-llama3b-qlora.json: 4.85 GiB allocated
# in its peak phase, rounded up for the allocator's reserve). A GPU with less free memory than
# this runs out of memory part-way through the first steps or the first eval.
KNOWN_PEAK_GIB = {
    "llama3b-qlora": 6.0,
    "mistral7b-qlora": 8.6,
    "phi3mini-qlora": 4.5,
    "qwen7b-qlora": 9.5,
}
# Hub organisations whose models need an accepted licence and a token to download.
GATED_PREFIXES = ("meta-llama/", "mistralai/")
HUB_PROBE_TIMEOUT_S = 5
GPU_DEVICE_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


class PreflightError(RuntimeError):
    """The machine cannot train the recipe; the message lists each reason and what to do."""


@dataclass
class Gpu:
    name: str
    capability: tuple[int, int]
    free_gib: float
    bf16: bool


@dataclass
class Machine:
    gpus: list[Gpu] = field(default_factory=list)
    why_none: str = ""  # when there is no GPU: how we know
    bnb_cuda: bool | None = None  # bitsandbytes' CUDA library loads (None: not checked)
    bnb_detail: str = ""


def cuda_reasons(config: dict[str, Any]) -> list[str]:
    """The config keys that make a recipe need a CUDA GPU."""
    reasons = [key for key in ("load_in_4bit", "load_in_8bit") if config.get(key) is True]
    if config.get("adapter") == "qlora" and "load_in_4bit" not in reasons:
        reasons.append("adapter: qlora")
    reasons += [key for key in ("bf16", "fp16", "tf32") if config.get(key) is True]
    kernels = [k for k in config if k.startswith("lora_") and k.endswith("_kernel")]
    if any(config.get(k) is True for k in kernels):
        reasons.append("LoRA kernels (Triton)")
    return reasons


def probe_machine(check_bnb: bool) -> Machine:
    """What this machine has. No NVIDIA/AMD driver at all is known without importing torch.
    The launcher holds no CUDA context of its own while Axolotl trains (a context pins a few
    hundred MB of the GPU and costs seconds): GPUs are read with nvidia-smi where it exists, and
    bitsandbytes is tried in a child process."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return Machine(why_none="CUDA_VISIBLE_DEVICES is empty")
    if not any(Path(path).exists() for path in GPU_DEVICE_FILES):
        return Machine(why_none="no GPU driver on this machine")
    gpus = nvidia_smi_gpus()
    machine = Machine(gpus=gpus) if gpus is not None else _torch_probe()
    if machine.gpus and check_bnb:
        machine.bnb_cuda, machine.bnb_detail = _bitsandbytes_cuda_library()
    return machine


def nvidia_smi_gpus() -> list[Gpu] | None:
    """The visible NVIDIA GPUs, or None when nvidia-smi cannot say (then torch is asked)."""
    query = "--query-gpu=index,name,memory.free,compute_cap"
    try:
        listed = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        rows = [[cell.strip() for cell in line.split(",")] for line in listed.splitlines()]
        found = {}
        for index, name, free, cap in rows:
            capability = tuple(map(int, cap.split(".")))
            # bf16 from Ampere (8.0) on, as torch.cuda.is_bf16_supported() decides it.
            found[index] = Gpu(name, capability, float(free) / 1024, capability >= (8, 0))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(found.values())
    if not all(d.strip().isdigit() for d in visible.split(",") if d.strip()):
        return None  # UUIDs or MIG names: let torch resolve them
    return [found[d.strip()] for d in visible.split(",") if d.strip() in found]


def _torch_probe() -> Machine:
    import torch

    if not torch.cuda.is_available():
        return Machine(why_none=f"torch {torch.__version__} sees no CUDA device")
    machine = Machine()
    for index in range(torch.cuda.device_count()):
        free, _ = torch.cuda.mem_get_info(index)
        machine.gpus.append(
            Gpu(
                name=torch.cuda.get_device_name(index),
                capability=torch.cuda.get_device_capability(index),
                free_gib=free / 2**30,
                bf16=torch.cuda.is_bf16_supported(),
            )
        )
    return machine


def _torch_cuda_version() -> str | None:
    """torch's CUDA build ("13.0"), read from torch/version.py without importing torch (an
    import costs ~10 s on a cold machine; this check runs before every training)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version_file.read_text("utf-8")
    except OSError:
        return None
    match = re.search(r"^cuda(?:: [^=]+)? = ['\"]([0-9.]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def _bitsandbytes_cuda_library() -> tuple[bool, str]:
    """Whether bitsandbytes ships the CUDA library it will load for this torch: the file it
    picks (libbitsandbytes_cuda<major><minor>, or BNB_CUDA_VERSION's) must be in the package.
    Checked on disk in milliseconds; a library that is present but cannot load (a broken
    driver) still fails inside Axolotl with bitsandbytes' own message."""
    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or not spec.submodule_search_locations:
        return False, "bitsandbytes is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    cuda = _torch_cuda_version()
    if cuda is None:
        return False, "the installed torch is not a CUDA build"
    wanted = os.environ.get("BNB_CUDA_VERSION") or cuda.replace(".", "")[:3]
    suffix = ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"
    library = package / f"libbitsandbytes_cuda{wanted}{suffix}"
    if not library.is_file():
        shipped = sorted(p.name for p in package.glob(f"libbitsandbytes_*{suffix}"))
        return False, (
            f"bitsandbytes has no library for CUDA {cuda} ({library.name} missing; it ships "
            f"{', '.join(shipped) or 'none'})"
        )
    return True, ""


def gpu_problems(config: dict[str, Any], recipe: str, gpus: int, machine: Machine) -> list[str]:
    """Why ``machine`` cannot run a recipe that needs CUDA ([] if it can)."""
    reasons = cuda_reasons(config)
    if not reasons:
        return []
    needs = f"{recipe} needs a CUDA GPU ({', '.join(reasons)})"
    if not machine.gpus:
        return [
            f"{needs} and there is none: {machine.why_none}. On CPU use RECIPE={TINY_RECIPE} "
            "(or `make demo`); for this recipe use a machine with an NVIDIA GPU "
            "(`make docker-train` runs it in the project's image)"
        ]
    problems = []
    if gpus > len(machine.gpus):
        problems.append(f"--gpus {gpus} asked for, {len(machine.gpus)} visible: use GPUS=1")
    used = machine.gpus[: max(gpus, 1)]
    old = [g for g in used if g.capability < (8, 0)]
    if config.get("tf32") is True and old:
        problems.append(
            f"tf32: true needs an Ampere or newer GPU; {old[0].name} is compute capability "
            f"{old[0].capability[0]}.{old[0].capability[1]}: --override tf32=false"
        )
    if config.get("bf16") is True and not all(g.bf16 for g in used):
        problems.append(
            f"bf16: true needs bf16 support, which {used[0].name} lacks: --override bf16=auto "
            "(fp16 where bf16 is missing)"
        )
    if (config.get("load_in_4bit") or config.get("load_in_8bit")) and machine.bnb_cuda is False:
        problems.append(
            f"4/8-bit loading needs bitsandbytes with CUDA: {machine.bnb_detail}; reinstall it "
            "(pip install -c constraints.txt bitsandbytes) or use the Docker image"
        )
    peak = KNOWN_PEAK_GIB.get(recipe)
    short = [g for g in used if peak and g.free_gib < peak]
    if short:
        problems.append(
            f"{short[0].name} has {short[0].free_gib:.1f} GiB free; {recipe} peaks at about "
            f"{peak:g} GiB (measured): stop what else runs on it (nvidia-smi) or pick a GPU "
            "with CUDA_VISIBLE_DEVICES"
        )
    return problems


def _is_hub_id(base: str) -> bool:
    parts = base.split("/")
    local = Path(base).exists() or (REPO / base).exists() or base.startswith(("/", ".", "models/"))
    return len(parts) == 2 and all(parts) and not local


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_access(repo_id: str, token: str | None) -> str:
    """'' if the hub lets us download ``repo_id``, else why not (one line, never the token)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)  # the endpoint as now (huggingface_hub's module-level api is fixed)
    try:
        api.model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:  # any failure is a reason
        return _why(err)
    try:
        api.auth_check(repo_id)
    except Exception as err:
        # The hub answered model_info: only a refusal of this token is worth stopping for.
        return "gated" if type(err).__name__ == "GatedRepoError" else ""
    return ""


def _why(err: Exception) -> str:
    name = type(err).__name__
    if name == "GatedRepoError":
        return "gated"
    if name == "RepositoryNotFoundError":
        return "not found (a typo, or private and the token cannot see it)"
    first = str(err).splitlines()[0][:160] if str(err) else ""
    return f"hub unreachable ({name}: {first})"


def base_model_problems(base: str, token: str | None, online_probe: bool) -> list[str]:
    """Why the base model cannot be loaded ([] if it is local, cached or downloadable)."""
    if not base or not _is_hub_id(base) or _cached(base):
        return []
    from huggingface_hub import constants

    licence = f"accept its licence on https://huggingface.co/{base}, then set HF_TOKEN"
    if constants.HF_HUB_OFFLINE:
        gated = f"; it is gated: {licence}" if base.startswith(GATED_PREFIXES) else ""
        return [
            f"base model {base} is not in the Hugging Face cache and HF_HUB_OFFLINE=1: download "
            f"it once online (hf download {base}) or unset HF_HUB_OFFLINE{gated}"
        ]
    if base.startswith(GATED_PREFIXES) and not token:
        return [f"base model {base} is gated and no token is set: {licence}"]
    if not online_probe:
        return []
    why = _hub_access(base, token)
    if why == "gated":
        return [f"base model {base} is gated and this token has no access: {licence}"]
    if why:
        return [f"base model {base} is not cached and cannot be fetched: {why}"]
    return []


def planned_config(
    recipe_config: dict[str, Any], base_model: str | None, overrides: list[tuple[str, Any]]
) -> dict[str, Any]:
    """The keys that decide where the recipe can run, as the run will have them."""
    config = dict(recipe_config)
    if base_model:
        config["base_model"] = base_model
    config.update(dict(overrides))
    return config


def check(
    config: dict[str, Any],
    recipe: str,
    gpus: int,
    token: str | None,
    machine: Machine | None = None,
) -> None:
    """Raise PreflightError listing every reason this machine cannot train ``config``."""
    problems: list[str] = []
    if cuda_reasons(config):  # only then is torch imported, or the GPUs looked at
        quantized = bool(config.get("load_in_4bit") or config.get("load_in_8bit"))
        machine = machine or probe_machine(check_bnb=quantized)
        problems = gpu_problems(config, recipe, gpus, machine)
    # Asking the hub is worth its second only where the run could otherwise go ahead.
    problems += base_model_problems(
        str(config.get("base_model") or ""), token, online_probe=not problems
    )
    if problems:
        lines = [f"{recipe} cannot train on this machine (nothing was written):"]
        lines += [f"  - {problem}" for problem in problems]
        raise PreflightError("\n".join(lines))
