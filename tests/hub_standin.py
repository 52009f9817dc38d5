"""A stand-in for the Hugging Face Hub's HTTP API, on a loopback port, for push tests.

It answers the calls huggingface_hub makes for what a run does: who am I (whoami-v2), create a
repository, ask how to upload files (preupload: always "regular", so file contents come inline in
the commit, no LFS), and commit (an NDJSON body: a header, then one line per file). It records
every request (method, path, headers, body) and every commit's files, so a test can check what
was pushed and that the token went only into the Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


@dataclass
class Commit:
    repo: str
    summary: str
    files: dict[str, bytes]
    deleted: list[str]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HubState:
    user: str
    requests: list[Request] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    # Models already on the hub: repo id -> the tokens granted access (None: not gated).
    models: dict[str, set[str] | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: HubState  # set on the subclass made per server
    endpoint: str

    def log_message(self, *args: Any) -> None:  # quiet: the test reads state.requests
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        with self.state.lock:
            self.state.requests.append(request)
        return request

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._record()
        path = self.path.split("?")[0]
        if path == "/api/whoami-v2":
            return self._reply(200, {"type": "user", "name": self.state.user, "orgs": []})
        repo = _repo_of(path, "/api/models/")
        if path.endswith("/auth-check") and repo in self.state.models:
            granted = self.state.models[repo]
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if granted is not None and token not in granted:
                return self._gated(repo)
            return self._reply(200, {"id": repo})
        if repo in self.state.repos or repo in self.state.models:
            return self._reply(200, {"id": repo, "private": True, "sha": _sha(repo)})
        if repo:
            return self._error(404, "RepoNotFound", f"Repository {repo} not found")
        return self._reply(404, {"error": f"stand-in: no route for GET {path}"})

    def _gated(self, repo: str) -> None:
        self._error(403, "GatedRepo", f"Access to model {repo} is restricted.")

    def _error(self, status: int, code: str, message: str) -> None:
        """An error as the real hub sends it: huggingface_hub reads X-Error-Code."""
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802
        self._record()
        self.send_response(404)
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        request = self._record()
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            body = json.loads(request.body or b"{}")
            repo = f"{body.get('organization') or self.state.user}/{body['name']}"
            with self.state.lock:
                private = body.get("private") or body.get("visibility") == "private"
                self.state.repos.setdefault(repo, {"private": bool(private)})
            return self._reply(200, {"url": f"{self.endpoint}/{repo}", "name": repo})
        if path == "/api/validate-yaml":  # a README's metadata header must be valid YAML
            content = json.loads(request.body or b"{}").get("content", "")
            error = _metadata_error(content)
            errors = [{"message": error}] if error else []
            return self._reply(400 if error else 200, {"errors": errors, "warnings": []})
        if "/preupload/" in path:
            files = json.loads(request.body or b"{}").get("files", [])
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                     for f in files]  # fmt: skip
            return self._reply(200, {"files": modes})
        if "/commit/" in path:
            repo = _repo_of(path.split("/commit/")[0], "/api/models/")
            commit = _parse_commit(repo, request.body)
            with self.state.lock:
                self.state.commits.append(commit)
            oid = hashlib.sha1(request.body).hexdigest()
            url = f"{self.endpoint}/{repo}/commit/{oid}"
            return self._reply(200, {"commitUrl": url, "commitOid": oid, "success": True})
        return self._reply(404, {"error": f"stand-in: no route for POST {path}"})


def _repo_of(path: str, prefix: str) -> str:
    parts = path.removeprefix(prefix).split("/")
    return "/".join(parts[:2]) if path.startswith(prefix) else ""


def _metadata_error(readme: str) -> str:
    if not readme.startswith("---\n"):
        return ""
    header = readme[4:].split("\n---", 1)[0]
    try:
        yaml.safe_load(header)
    except yaml.YAMLError as err:
        return f"invalid YAML: {err}"
    return ""


def _sha(repo: str) -> str:
    return hashlib.sha1(repo.encode()).hexdigest()


def _parse_commit(repo: str, body: bytes) -> Commit:
    summary, files, deleted = "", {}, []
    for line in body.decode().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        value = item.get("value", {})
        if item.get("key") == "header":
            summary = value.get("summary", "")
        elif item.get("key") == "file":
            raw = value["content"]
            files[value["path"]] = (
                base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
            )
        elif item.get("key") in ("deletedFile", "deletedFolder"):
            deleted.append(value["path"])
    return Commit(repo, summary, files, deleted)


class HubStandIn:
    """`with HubStandIn("user") as hub:` serves on hub.endpoint until the block ends."""

    def __init__(self, user: str, models: dict[str, set[str] | None] | None = None) -> None:
        self.state = HubState(user, models=dict(models or {}))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.endpoint = self.endpoint
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
