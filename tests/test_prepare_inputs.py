"""prepare on adversarial inputs and paths: one-line errors, never a traceback; findings for
what passes JSON validation but is still wrong; an output directory that is always one run's
complete output."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import conftest
import pytest
from test_prepare import SPLITS, read_jsonl, row, rows_for, write

import preprocessing.prepare as prepare_module
from preprocessing.errors import TooLittleDataError
from preprocessing.paths import OUR_FILES
from preprocessing.prepare import prepare
from preprocessing.task import build_prompt

GOOD = rows_for(range(5))  # 5 abstracts x 3 tasks
GOOD_TEXT = "".join(line + "\n" for line in GOOD)


def run_prepare(*args: str | Path, user: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(user or []), conftest.PYTHON, "-m", "preprocessing", "prepare", *map(str, args)]
    return subprocess.run(command, cwd=conftest.REPO, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The CLI's whole stderr: exactly one `error:` line, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ---- inputs that used to pass silently or end in a traceback ---------------------------------


def _make(tmp: Path, kind: str) -> tuple[Path, Path]:
    """(input, --out) for one adversarial case."""
    src, out = tmp / "in.jsonl", tmp / "out"
    if kind == "empty":
        src.write_bytes(b"")
    elif kind == "blank-lines":
        src.write_bytes(b"\n   \n\r\n\n")
    elif kind in ("one-abstract", "two-abstracts"):
        write(src, rows_for(range(1 if kind == "one-abstract" else 2)))
    elif kind == "input-is-a-directory":
        src = tmp / "data"
        src.mkdir()
        write(src / "both_rel_instruct_all.jsonl", GOOD)
    elif kind == "out-is-a-file":
        write(src, GOOD)
        out.write_text("not a directory")
    elif kind == "out-under-a-file":
        write(src, GOOD)
        (tmp / "plain").write_text("x")
        out = tmp / "plain" / "sub" / "out"
    elif kind == "out-holds-other-files":
        write(src, GOOD)
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif kind.startswith("utf-16") or kind.startswith("utf-32"):
        codec = {"utf-16": "utf-16", "utf-16-le-no-bom": "utf-16-le",
                 "utf-16-be-no-bom": "utf-16-be", "utf-32": "utf-32"}[kind]  # fmt: skip
        src.write_bytes(GOOD_TEXT.encode(codec))
    elif kind == "gzip":
        src.write_bytes(gzip.compress(GOOD_TEXT.encode()))
    return src, out


CASES = [
    pytest.param("empty", 1, "in.jsonl: is empty (rows in: 0", id="empty-file"),
    pytest.param("blank-lines", 1, "has no rows to keep (rows in: 0", id="only-blank-lines"),
    pytest.param("one-abstract", 1, "only 1 abstract(s)", id="one-abstract"),
    pytest.param("two-abstracts", 1, "only 2 abstract(s)", id="two-abstracts"),
    pytest.param("input-is-a-directory", 2, "data: is a directory, not a file", id="input-dir"),
    pytest.param("out-is-a-file", 2, "--out is an existing file", id="out-is-a-file"),
    pytest.param("out-under-a-file", 2, "plain is a file, not a directory", id="out-under-file"),
    pytest.param("out-holds-other-files", 2, "did not write (notes.txt)", id="out-not-ours"),
    pytest.param("utf-16", 1, "UTF-16 LE text (with a byte-order mark)", id="utf-16-bom"),
    pytest.param("utf-16-le-no-bom", 1, "UTF-16 LE text (no byte-order mark)", id="utf-16le"),
    pytest.param("utf-16-be-no-bom", 1, "UTF-16 BE text (no byte-order mark)", id="utf-16be"),
    pytest.param("utf-32", 1, "UTF-32 LE text (with a byte-order mark)", id="utf-32"),
    pytest.param("gzip", 1, "gzip-compressed", id="gzip"),
]


@pytest.mark.parametrize("kind, code, message", CASES)
def test_bad_input_or_path_stops_with_one_line(tmp_path: Path, kind: str, code: int, message):
    src, out = _make(tmp_path, kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_prepare(src, "--out", out)
    assert result.returncode == code, result.stderr
    assert message in one_line_error(result)
    # nothing written, nothing half-written
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_too_few_abstracts_says_the_minimum(tmp_path: Path) -> None:
    with pytest.raises(TooLittleDataError, match="at least 3 are needed, one each for train"):
        prepare(
            write(tmp_path / "in.jsonl", rows_for(range(2))), tmp_path / "o", show_progress=False
        )
    manifest = prepare(write(tmp_path / "in.jsonl", rows_for(range(3))), tmp_path / "o")
    assert manifest["abstracts"] == {"train": 1, "validation": 1, "test": 1}


def test_utf16_names_the_encoding_and_how_to_convert(tmp_path: Path) -> None:
    src, out = _make(tmp_path, "utf-16")
    line = one_line_error(run_prepare(src, "--out", out))
    assert "not UTF-8 JSONL" in line and f"iconv -f UTF-16LE -t UTF-8 {src}" in line


# ---- a non-root user (the tests run as root, for whom permissions never fail) ------------------


def _nobody() -> list[str]:
    """The command prefix that runs as the unprivileged user `nobody`, or skip."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to act as an unprivileged user")
    user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*user, conftest.PYTHON, "-c", "import preprocessing.prepare"],
        cwd=conftest.REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode:
        pytest.skip(f"the unprivileged user cannot run this checkout: {probe.stderr[-300:]}")
    return user


@pytest.fixture
def world_dir():
    """A temporary directory the unprivileged user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="prepare-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_unreadable_input_as_non_root(world_dir: Path) -> None:
    user = _nobody()
    src = write(world_dir / "in.jsonl", GOOD)
    src.chmod(0o600)  # root's, unreadable to nobody
    out = world_dir / "writable"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    result = run_prepare(src, "--out", out / "out", user=user)
    assert result.returncode == 2
    assert "in.jsonl: cannot read it (permission denied)" in one_line_error(result)


def test_unwritable_output_as_non_root(world_dir: Path) -> None:
    user = _nobody()
    src = write(world_dir / "in.jsonl", GOOD)
    src.chmod(0o644)
    result = run_prepare(src, "--out", world_dir / "out", user=user)
    assert result.returncode == 2
    assert f"cannot write in {world_dir} (permission denied)" in one_line_error(result)
    assert not (world_dir / "out").exists()


# ---- rows that pass JSON validation but are still wrong ----------------------------------------


def test_escaped_nul_is_rejected_with_its_line(tmp_path: Path) -> None:
    bad = json.dumps({"prompt": build_prompt("chemical", "NUL study."), "completion": "- a\u0000b"})
    src = write(tmp_path / "in.jsonl", [*GOOD[:3], bad, *GOOD[3:]])
    assert "\\u0000" in src.read_text()  # escaped, as JSON writes it: json.loads accepts it
    manifest = prepare(src, tmp_path / "out", allow_rejects=True, show_progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["line"] == 4
    assert reject["reason"] == "NUL character (\\u0000) in 'completion' at character 3"
    kept = [r for split in SPLITS for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    assert not any("\x00" in r["completion"] or "\x00" in r["prompt"] for r in kept)
    assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"] == 16


def test_other_control_characters_are_findings(tmp_path: Path) -> None:
    lines = [*GOOD, row(9, "disease", "- gout\u001b[0m\n- fever\u0007")]
    manifest = prepare(write(tmp_path / "in.jsonl", lines), tmp_path / "out", show_progress=False)
    assert manifest["findings"]["control_characters"] == 1
    findings = read_jsonl(tmp_path / "out" / "findings.jsonl")
    (found,) = [f for f in findings if f["kind"] == "control_characters"]
    assert found["line"] == 16 and found["detail"] == "completion: U+001B at 6, U+0007 at 18"
    assert "control_characters: 1" in (tmp_path / "out" / "report.md").read_text()


def test_a_50_mb_row_is_a_long_row_finding(tmp_path: Path) -> None:
    huge = build_prompt("relation", "Lithium. " * (50 * 2**20 // 9))
    lines = [*GOOD, json.dumps({"prompt": huge, "completion": "- Chemical a influences disease b"})]
    src = write(tmp_path / "in.jsonl", lines)
    assert src.stat().st_size > 50 * 2**20
    started = time.perf_counter()
    manifest = prepare(src, tmp_path / "out", show_progress=False)
    assert time.perf_counter() - started < 30
    assert manifest["findings"]["long_row"] == 1
    (found,) = [
        f for f in read_jsonl(tmp_path / "out" / "findings.jsonl") if f["kind"] == "long_row"
    ]
    assert found["line"] == 16
    assert (
        "> sequence_len 8,192 of " in found["detail"]
        and "every recipe would drop it" in found["detail"]
    )


def test_reference_sized_rows_are_not_long(tmp_path: Path) -> None:
    manifest = prepare(conftest.SAMPLE, tmp_path / "out", show_progress=False)
    assert manifest["findings"]["long_row"] == manifest["findings"]["control_characters"] == 0


# ---- the output directory: one run's complete output, replaced as a whole ----------------------


def test_failed_run_into_a_used_out_leaves_only_its_own_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(write(tmp_path / "good.jsonl", GOOD), out, show_progress=False)
    assert {p.name for p in out.iterdir()} == OUR_FILES
    bad = write(tmp_path / "bad.jsonl", [*GOOD, "not json"])
    result = run_prepare(bad, "--out", out)
    assert result.returncode == 1
    assert {p.name for p in out.iterdir()} == {"rejects.jsonl"}
    assert [r["line"] for r in read_jsonl(out / "rejects.jsonl")] == [16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "out"]


def test_crash_while_writing_keeps_the_previous_output(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    prepare(write(tmp_path / "a.jsonl", GOOD), out, show_progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write = prepare_module._write

    def disk_full(path: Path, data: bytes) -> str:
        if path.name == "test.jsonl":
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(prepare_module, "_write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        prepare(write(tmp_path / "b.jsonl", rows_for(range(7))), out, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "out"]


def test_rerun_replaces_the_directory_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(write(tmp_path / "a.jsonl", [*GOOD, "not json"]), out, allow_rejects=True)
    assert read_jsonl(out / "rejects.jsonl")
    prepare(write(tmp_path / "b.jsonl", GOOD), out, show_progress=False)
    assert read_jsonl(out / "rejects.jsonl") == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["path"].endswith("b.jsonl") and manifest["rows_rejected"] == 0


def test_make_train_on_an_empty_file_stops_before_a_run(tmp_path: Path) -> None:
    """The launcher prepares stale data itself: the same one-line error, no run directory."""
    src = write(tmp_path / "in.jsonl", ["", "  "])
    result = conftest.run_cli(
        ["training", "train", "tiny-cpu", "--data", src, "--processed", tmp_path / "p",
         "--runs-dir", tmp_path / "runs"],
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stdout, result.stdout
    assert f"error: {src}: has no rows to keep (rows in: 0" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
