"""What a run trained on, for its record: platform, CPUs, the GPUs it was given, versions."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
from pathlib import Path
from typing import Any

from training import preflight


def package_versions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """The installed version of each package (None where it is not installed), without
    importing any of them."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def torch_cuda_build() -> str | None:
    """The CUDA version torch was built for, read from torch/version.py without importing torch
    (an import costs the launcher seconds; Axolotl's process imports it anyway)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    found = re.search(r"^cuda\b.*?=\s*'([^']+)'", version_py.read_text("utf-8"), re.M)
    return found.group(1) if found else None


def gpu_names(gpus: int) -> list[str]:
    """Names of the GPUs the run is given ([] without an NVIDIA driver or nvidia-smi)."""
    return [gpu.name for gpu in (preflight.nvidia_smi_gpus() or [])][: max(gpus, 1)]


def hardware(gpus: int) -> dict[str, Any]:
    """run.json's "hardware"."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpus_requested": gpus,
        "gpu_names": gpu_names(gpus),
    }
    if info["gpu_names"]:
        info["cuda"] = torch_cuda_build()
    # Informational only: a package that is not installed is left out.
    info.update({k: v for k, v in package_versions(("torch", "axolotl")).items() if v})
    return info
