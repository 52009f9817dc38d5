"""A small HTTP service around `eval extract`: one model, loaded once, standard library only.

    python -m eval serve --run runs/<dir> [--host 127.0.0.1] [--port 8000] [--merged]

    POST /extract  {"text": "..."} or {"texts": ["...", ...]}  (Content-Type: application/json)
                   -> 200 {"results": [{"chemicals", "diseases", "relations", "format_errors"}]}
    GET  /health   -> 200 {"status": "ok", "run": ...}

Bad requests get a JSON {"error": "..."} with 400 (malformed JSON, missing or mistyped field),
404 (unknown path), 405 (wrong method), 411 (no Content-Length), 413 (body, text count or text
length over the limits) or 415 (not JSON). Generation is serialized by a lock: the model answers
one request at a time, each request's abstracts in one batched generate call. There is no
authentication: it listens on loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eval.generate import InputError
from inference.run import RunError, add_run_argument, no_run_message


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_texts: int = 16  # abstracts per request: 3 prompts each in one generate call
    max_chars: int = 20_000  # per text; a PubMed abstract is ~1,500-3,000 characters


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# path -> the one method it answers
ROUTES = {"/extract": "POST", "/health": "GET"}


def parse_body(raw: bytes, limits: Limits) -> list[str]:
    """The texts of a POST /extract body, or a RequestError saying what is wrong."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed JSON body: {error}") from None
    if not isinstance(body, dict) or ("text" in body) == ("texts" in body):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, 'expected a JSON object with either "text" or "texts"'
        )
    texts = [body["text"]] if "text" in body else body["texts"]
    if "texts" in body and (not isinstance(texts, list) or not texts):
        raise RequestError(HTTPStatus.BAD_REQUEST, '"texts" must be a non-empty list of strings')
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str) or not text.strip():
            where = '"text"' if "text" in body else f'"texts" item {number}'
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where} must be a non-empty string")
    if len(texts) > limits.max_texts:
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{len(texts)} texts; at most {limits.max_texts} per request",
        )
    for number, text in enumerate(texts, start=1):
        if len(text) > limits.max_chars:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"text {number} has {len(text)} characters; at most {limits.max_chars}",
            )
    return texts


class Handler(BaseHTTPRequestHandler):
    server: ExtractionServer
    server_version = "cdr-extract/1"
    timeout = 30  # seconds a client may take to send its request (slow clients get dropped)

    def _send_json(self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path not in ROUTES:
                raise RequestError(
                    HTTPStatus.NOT_FOUND, f"no such path: {path} (try POST /extract or GET /health)"
                )
            if method != ROUTES[path]:
                raise RequestError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{path} answers {ROUTES[path]} only",
                    {"Allow": ROUTES[path]},
                )
            if path == "/health":
                self._send_json(HTTPStatus.OK, {"status": "ok", **self.server.info})
            else:
                results = self.server.extract(self._read_texts())
                self._send_json(HTTPStatus.OK, {"results": results})
        except RequestError as error:
            # The body may be left unread: close the connection rather than misread it later.
            self.close_connection = True
            self._send_json(error.status, {"error": error.message}, error.headers)
        except Exception as error:  # noqa: BLE001 - a request must never take the server down
            self.log_error("extraction failed: %s: %s", type(error).__name__, error)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "extraction failed"})

    def _read_texts(self) -> list[str]:
        limits = self.server.limits
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
            )
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if not length.isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length: {length!r}")
        if int(length) > limits.max_body_bytes:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes; at most {limits.max_body_bytes}",
            )
        return parse_body(self.rfile.read(int(length)), limits)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


class ExtractionServer(ThreadingHTTPServer):
    """Threads accept and validate requests concurrently; the model runs one request at a time."""

    daemon_threads = True

    def __init__(
        self, extractor: Any, address: tuple[str, int], limits: Limits, info: dict[str, Any]
    ) -> None:
        super().__init__(address, Handler)
        self.extractor, self.limits, self.info = extractor, limits, info
        self.lock = threading.Lock()

    def extract(self, texts: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            return self.extractor.extract(texts)


def make_server(
    extractor: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    run: str | None = None,
) -> ExtractionServer:
    """A server bound to host:port (port 0: a free one, see server.server_address)."""
    target = getattr(extractor, "target", None)
    info = {
        "run": run or getattr(target, "run", None),
        "model": getattr(target, "model", None),
        "adapter": getattr(target, "adapter", None),
    }
    return ExtractionServer(extractor, (host, port), limits or Limits(), info)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="HTTP extraction service for a run (POST /extract, GET /health)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--merged", action="store_true", help="use RUN/merged, not the adapter")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--max-texts", type=int, default=Limits.max_texts)
    parser.add_argument("--max-chars", type=int, default=Limits.max_chars)
    parser.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from inference.extract import Extractor

    if args.run is None:
        print(no_run_message("serve"), file=sys.stderr)
        return 2
    limits = Limits(args.max_body_bytes, args.max_texts, args.max_chars)
    if min(limits.max_body_bytes, limits.max_texts, limits.max_chars, args.max_new_tokens) < 1:
        print("error: limits and --max-new-tokens must be at least 1", file=sys.stderr)
        return 2
    try:
        extractor = Extractor(args.run, merged=args.merged, max_new_tokens=args.max_new_tokens)
        server = make_server(extractor, args.host, args.port, limits, str(args.run))
    except (InputError, RunError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}: anyone who can reach it can use it "
            "(no authentication)",
            file=sys.stderr,
        )
    print(
        f"serving {args.run} on http://{host}:{port} (POST /extract, GET /health); Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
