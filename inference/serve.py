"""HTTP extraction service for a run: POST /extract, GET /health, OpenAPI at /docs.

    python -m inference serve --run runs/<dir> [--host 127.0.0.1] [--port 8000]
                              [--batch-window-ms 15] [--max-batch-texts 32] [--merged]

    POST /extract  {"text": "..."} or {"texts": ["...", ...]}  (Content-Type: application/json)
                   -> 200 {"results": [{"chemicals", "diseases", "relations", "format_errors"}]}
    GET  /health   -> 200 {"status": "ok", "ready": true, "run", "model", "adapter",
                           "queue_depth", "decoding", "batches", "clients_left"}

Requests that arrive together (until none has come for --batch-window-ms; up to
--max-batch-texts texts) are decoded in ONE extract call on one worker thread and the answers
split back per request: eight concurrent requests are one model call. Every bad request gets a
JSON {"error": ...} with a 4xx status; the service binds 127.0.0.1 unless told otherwise, and a
non-loopback --host needs SERVE_API_KEY set (then POST /extract needs "Authorization: Bearer
<key>").
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import socket
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

# FastAPI reads the endpoints' annotations by name from this module: Request must live here.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from inference.serve_batching import Batcher
from inference.serve_requests import (
    CLIENT_CLOSED,
    ApiError,
    Settings,
    read_texts,
    request_model,
)

log = logging.getLogger("inference.serve")


class TextExtractor(Protocol):
    """What the service needs from a model: batched extraction and prompt lengths in tokens."""

    max_prompt_tokens: int

    def extract(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def prompt_tokens(self, text: str) -> int: ...


# ---- the model side ----------------------------------------------------------------------------


def load_extractor(
    run_dir: str | Path, merged: bool = False, max_new_tokens: int = 512
) -> TextExtractor:
    """The run's model behind the TextExtractor interface: the one place that builds it."""
    from inference.extract import Extractor

    return Extractor(run_dir, merged=merged, max_new_tokens=max_new_tokens)


def run_info(extractor: Any, run: str) -> tuple[tuple[str, Any], ...]:
    target = getattr(extractor, "target", None)
    return (
        ("run", run),
        ("model", getattr(target, "model", None)),
        ("adapter", getattr(target, "adapter", None)),
    )


# ---- the application ---------------------------------------------------------------------------


def error_response(status: int, message: str, close: bool = False, **headers: str) -> JSONResponse:
    if close:  # the body may be unread: never read the rest as a next request
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def check_api_key(authorization: str | None, key: str | None) -> None:
    if key is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), key.encode("utf-8")
    ):
        raise ApiError(HTTPStatus.UNAUTHORIZED, 'send the API key as "Authorization: Bearer <key>"')


def batcher_lifespan(batcher: Batcher) -> Callable:
    """The app's lifespan: the batcher's decode thread runs while the app does."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    return lifespan


def health_body(batcher: Batcher, settings: Settings) -> dict[str, Any]:
    return {
        "status": "ok",
        "ready": batcher.running,
        **dict(settings.info),
        "queue_depth": batcher.queued_texts,
        "decoding": batcher.decoding_texts,
        "batches": batcher.batches_decoded,
    }


def create_app(extractor: TextExtractor, settings: Settings) -> FastAPI:
    """The FastAPI application serving `extractor` under `settings`' limits."""

    batcher = Batcher(extractor, settings.batch_window_ms / 1000, settings.max_batch_texts)
    model = request_model(settings.max_texts, settings.max_chars)
    clients_left: list[str] = []  # why each client that left before its answer went (/health)

    def client_left(why: str) -> JSONResponse:
        clients_left.append(why)
        log.info("client left before its answer (%s); answer dropped", why)
        return error_response(CLIENT_CLOSED, "client closed the connection")

    app = FastAPI(
        title="cdr-finetune extraction service",
        description=(__doc__ or "").strip().splitlines()[0],
        lifespan=batcher_lifespan(batcher),
    )
    app.add_exception_handler(HTTPException, routing_error)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is loaded; answers while a batch decodes."""
        return health_body(batcher, settings) | {"clients_left": len(clients_left)}

    schema = model.model_json_schema()
    body_doc = {"required": True, "content": {"application/json": {"schema": schema}}}

    @app.post("/extract", openapi_extra={"requestBody": body_doc})
    async def extract(request: Request) -> Any:
        """Chemicals, diseases and relations for each text, in order."""
        try:
            check_api_key(request.headers.get("authorization"), settings.api_key)
            texts = await read_texts(request, model, settings)
            await check_prompt_lengths(extractor, texts)
        except ApiError as error:
            if error.status == CLIENT_CLOSED:  # gone before its body was read: the same case
                return client_left(error.message)
            return error_response(error.status, error.message, close=True)
        try:
            results = await batcher.submit(texts)
        except Exception as error:  # noqa: BLE001 - one failed batch must not stop the service
            log.error("extraction failed: %s: %s", type(error).__name__, error)
            return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "extraction failed")
        if await request.is_disconnected():  # nothing can be sent; 499 is for the access log
            return client_left(f"{len(texts)} text(s) decoded")
        return {"results": results}

    app.add_middleware(AccessLog)
    return app


async def routing_error(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own 404 / 405 (unknown path, HEAD, OPTIONS, ...) in the service's shape."""
    assert isinstance(error, HTTPException)
    message = f"no such path: {request.url.path} (try POST /extract or GET /health)"
    if error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        message = f"{request.url.path} does not answer {request.method}"
    elif error.status_code != HTTPStatus.NOT_FOUND:
        message = str(error.detail)
    return error_response(error.status_code, message, **(error.headers or {}))


async def check_prompt_lengths(extractor: TextExtractor, texts: list[str]) -> None:
    """413 for a text whose longest task prompt leaves no room for the answer."""
    lengths = await asyncio.to_thread(lambda: [extractor.prompt_tokens(t) for t in texts])
    for number, tokens in enumerate(lengths, start=1):
        if tokens > extractor.max_prompt_tokens:
            raise ApiError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"text {number}: its prompt is {tokens} tokens; the model takes at most "
                f"{extractor.max_prompt_tokens} (context minus the answer budget)",
            )


class AccessLog:
    """ASGI middleware: one log line per request (method, path, status, milliseconds)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def send_noting_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.0f ms", scope["method"], scope["path"], status[0], elapsed)


# ---- the command ---------------------------------------------------------------------------------


def serve(args: argparse.Namespace, settings: Settings, sock: socket.socket) -> int:
    """Load the model, then answer on `sock` until Ctrl-C / SIGTERM."""
    import dataclasses

    import uvicorn

    from inference.serve_protocol import json_protocol

    try:
        extractor = load_extractor(args.run, args.merged, args.max_new_tokens)
    except (ValueError, OSError) as error:  # a missing or broken run (the loaders' errors)
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(settings, info=run_info(extractor, str(args.run)))
    app = create_app(extractor, settings)
    config = uvicorn.Config(
        app,
        http=json_protocol(settings.max_connections, settings.head_timeout_s),
        ws="none",
        lifespan="on",
        access_log=False,  # AccessLog above writes the one line per request
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    host, port = sock.getsockname()[:2]
    auth = "Bearer key required" if settings.api_key else "no authentication (loopback only)"
    log.info("serving %s on http://%s:%d (POST /extract, GET /health, /docs; %s)",
             args.run, host, port, auth)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
    return 0
