"""The Hugging Face Hub decision of a run, made once before training: the token, and whether the
run's private repository can be created (then Axolotl pushes every checkpoint and the final
adapter there) or the run trains locally, having said why."""

from __future__ import annotations

import os
import threading
from typing import Any

from training.console import say
from training.launch import scrub

HUB_TIMEOUT_S = 20


def hub_url(repo: str) -> str:
    return f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{repo}"


def hub_token() -> str | None:
    """HF_TOKEN, else the token of a logged-in huggingface-hub. Never printed."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # no token, whatever the reason
        return None


def _create_repo(name: str, token: str, repo_id: str | None) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = repo_id or f"{os.environ.get('HF_USERNAME') or api.whoami()['name']}/{name}"
    # Creating it now is the real test: a read-only token or a wrong org fails here, not
    # after the first checkpoint. Axolotl creates its repos private, so do we.
    api.create_repo(repo, private=True, exist_ok=True)
    return repo


def hub_repo(name: str, token: str | None, repo_id: str | None = None) -> str | None:
    """'<user>/<name>' (or ``repo_id``) if the hub answers and lets us create it; else None,
    having said why."""
    if not token:
        say("hub: no HF_TOKEN and no huggingface-cli login -> pushes off, training locally")
        return None
    # A hub that never answers must not hang the run: give up after HUB_TIMEOUT_S (a daemon
    # thread, so a request still hanging then cannot hold the process open either).
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["repo"] = _create_repo(name, token, repo_id)
        except Exception as err:  # any failure means: train locally
            outcome["error"] = err

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    if "repo" in outcome:
        say(f"hub: pushing checkpoints and the final adapter to {hub_url(outcome['repo'])}")
        return outcome["repo"]
    error = outcome.get("error")
    reason = (
        scrub(f"{type(error).__name__}: {error}", [token]).splitlines()[0][:300]
        if error
        else f"no answer within {HUB_TIMEOUT_S} s"
    )
    say(f"WARNING hub: {hub_url('')} unreachable or refused ({reason}) -> pushes off, local only")
    return None
