"""A run with a token and a reachable hub pushes: against a stand-in of the Hub's HTTP API on a
loopback port (tests/hub_standin.py), a tiny-cpu run creates <user>/<run name>, commits the
adapter at every checkpoint save and the final adapter and model card at the end, sends the
token only as the Authorization header and leaves it in no file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import FAKE_HF_TOKEN, SAMPLE, run_cli
from hub_standin import HubStandIn

pytestmark = pytest.mark.slow
USER = "cdr-tester"


@pytest.fixture(scope="module")
def pushed(tiny_model, processed_sample, tmp_path_factory):
    """(hub state, run dir, console, files the run may have written to) of one pushed run."""
    runs, hf_home = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("hf-home")
    with HubStandIn(USER) as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_USERNAME")}
        env.update(HF_TOKEN=FAKE_HF_TOKEN, HF_ENDPOINT=hub.endpoint, HF_HOME=str(hf_home))
        result = run_cli(
            ["training", "train", "tiny-cpu", "--data", SAMPLE, "--processed", processed_sample,
             "--runs-dir", runs, "--max-steps", "4", "--override", "save_steps=2",
             "--override", "eval_steps=2"],
            env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return hub.state, run_dir, result.stdout, [runs, hf_home]


def test_the_run_creates_user_slash_run_name(pushed):
    state, run_dir, console, _ = pushed
    assert re.fullmatch(r"tiny-cpu-\d{8}_\d{6}", run_dir.name)
    repo = f"{USER}/{run_dir.name}"
    assert list(state.repos) == [repo] and state.repos[repo]["private"] is True
    assert json.loads((run_dir / "run.json").read_text())["hub_repo"] == repo
    assert "hub: pushing checkpoints and the final adapter to http://127.0.0.1:" in console
    assert f"/{repo}" in console


def test_every_checkpoint_save_and_the_end_are_committed(pushed):
    state, run_dir, _, _ = pushed
    repo = f"{USER}/{run_dir.name}"
    assert {c.repo for c in state.commits} == {repo}
    steps = [c for c in state.commits if c.summary.startswith("Training in progress")]
    assert [c.summary for c in steps] == [
        "Training in progress, step 2",
        "Training in progress, step 4",
    ]
    for commit in steps:
        assert "adapter_model.safetensors" in commit.files and "adapter_config.json" in commit.files
    # The final adapter (the best checkpoint, reloaded at the end) is what the run dir holds.
    final = [c for c in state.commits if "adapter_model.safetensors" in c.files][-1]
    assert (
        final.files["adapter_model.safetensors"]
        == (run_dir / "adapter_model.safetensors").read_bytes()
    )
    assert final not in steps
    # The last commit of all is our model card, as the run dir has it.
    assert state.commits[-1].files.get("README.md") == (run_dir / "README.md").read_bytes()
    assert b"cdr" in state.commits[-1].files["README.md"].lower()


def test_the_token_goes_only_into_the_authorization_header(pushed):
    state, _, console, _ = pushed
    assert state.requests
    token = FAKE_HF_TOKEN
    for request in state.requests:
        assert request.headers.get("authorization") == f"Bearer {token}", request.path
        others = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        assert token not in request.path and token not in json.dumps(others)
        assert token.encode() not in request.body
    assert token not in console


def test_the_token_is_written_to_no_file(pushed):
    _, _, _, roots = pushed
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert FAKE_HF_TOKEN.encode() not in path.read_bytes(), path
