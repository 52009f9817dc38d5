"""The HTTP/1.1 connection layer under `python -m inference serve`: uvicorn's h11 protocol, in JSON.

Uvicorn answers what its parser rejects (a garbage request line, a bad `Content-Length`) with a
plain-text 400, lets a client take forever over its request head and merges duplicate
`Content-Length` headers before the application sees them. This subclass answers every such
request with a JSON `{"error": ...}` and closes the connection:

- a request head that is not complete within `head_timeout_s` (slow or silent clients): 408;
- more open connections than `max_connections`: 503 to the newcomer;
- `Content-Length` twice, or not ASCII digits: 400 naming it (checked on the raw head bytes);
- anything else h11 rejects (request line, header syntax, a body cut short by the client
  closing its side): 400.

The whole-body read deadline is the application's (`inference.serve`), since only it knows when
it stops reading.

Closing is lingering: a plain close while the client is still sending (a trickling body that got
its 408, a body too large for 413) makes the kernel answer with a reset, which can destroy the
response before the client reads it. So a close first half-closes (the response and a FIN go
out), drops whatever still arrives, and closes when the client does, or after LINGER_S.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from http import HTTPStatus

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("inference.serve")

# Lines of a request head; headers beyond the first 64 KiB are h11's to reject (16 KiB cap).
_HEAD_BYTES_KEPT = 65_536
_CONTENT_LENGTH_LINE = re.compile(rb"^content-length[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_ASCII_DIGITS = re.compile(rb"[0-9]+")
# Seconds a closed connection still reads (and drops) what its client sends before it closes.
LINGER_S = 2.0


class LingeringTransport:
    """The connection's transport, with close() as a lingering close (see the module's doc)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.inner, self.loop, self.lingering = transport, loop, False

    def __getattr__(self, name: str):  # everything else is the transport's own
        return getattr(self.inner, name)

    def is_closing(self) -> bool:
        return self.lingering or self.inner.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self.lingering = True
        try:
            self.inner.write_eof()  # the response, then a FIN; reading goes on
        except (OSError, RuntimeError, NotImplementedError):
            self.inner.close()
            return
        self.loop.call_later(LINGER_S, self.inner.close)


def json_error_bytes(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying {"error": message}, closing the connection."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def content_length_problem(head: bytes) -> str | None:
    """What is wrong with the Content-Length headers of a (possibly partial) request head."""
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i != -1]
    complete = head[: min(ends) + 2] if ends else head
    # Only whole lines count: the last one of a partial head may still be arriving.
    complete = complete[: complete.rfind(b"\n") + 1]
    values = [value.strip() for value in _CONTENT_LENGTH_LINE.findall(complete.replace(b"\r", b""))]
    if len(values) > 1:
        return f"Content-Length given {len(values)} times; send it once"
    if values and not _ASCII_DIGITS.fullmatch(values[0]):
        shown = values[0].decode("utf-8", "replace")[:40]
        return f"bad Content-Length {shown!r}: must be ASCII digits 0-9"
    return None


class JsonH11Protocol(H11Protocol):
    """H11Protocol answering in JSON, with a head deadline and a connection cap (set by
    json_protocol)."""

    max_connections = 64
    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(LingeringTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
        self.head = bytearray()
        self.head_timer: asyncio.TimerHandle | None = None
        self.over_limit = len(self.connections) > self.max_connections
        self._await_head()

    # -- waiting for a request head, with a deadline ------------------------------------
    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_head(self) -> None:
        # Started when a connection opens and when a next request's first bytes arrive;
        # between requests uvicorn's keep-alive timeout closes an idle connection.
        self.head.clear()
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.reject(
                HTTPStatus.REQUEST_TIMEOUT,
                f"request head not received within {self.head_timeout_s:g} s",
            )

    def reject(self, status: int, message: str) -> None:
        """Answer in JSON and close, whatever state the request is in."""
        log.info("%s %s: %s", status, self._peer(), message)
        self._cancel_head_timer()
        self.transport.write(json_error_bytes(status, message))
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    # -- uvicorn's hooks -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.over_limit:
            self.reject(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server busy: more than {self.max_connections} open connections; retry later",
            )
            return
        waiting = self._waiting_for_head()
        if waiting:
            if self.head_timer is None:  # the first bytes of a next request on this connection
                self._await_head()
            self.head += data[: max(0, _HEAD_BYTES_KEPT - len(self.head))]
            problem = content_length_problem(bytes(self.head))
            if problem:
                self.reject(HTTPStatus.BAD_REQUEST, problem)
                return
        super().data_received(data)
        if waiting and not self._waiting_for_head():
            self.head.clear()
            self._cancel_head_timer()

    def send_400_response(self, msg: str) -> None:
        self.reject(
            HTTPStatus.BAD_REQUEST,
            "malformed HTTP request (request line, headers or body framing)",
        )

    def eof_received(self) -> bool | None:
        if self.transport.is_closing():  # lingering after our answer: the client is done too
            self.transport.inner.close()
            return None
        if self._waiting_for_head():
            if bytes(self.head).strip():
                self.reject(HTTPStatus.BAD_REQUEST, "connection closed inside the request head")
            return None  # nothing pending: let asyncio close the transport
        if self.cycle.more_body:
            self.reject(
                HTTPStatus.BAD_REQUEST,
                "request body cut short: the client closed its side before Content-Length "
                "bytes arrived",
            )
        # Whole request in: as in plain uvicorn the client is gone; the app logs it once.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def json_protocol(max_connections: int, head_timeout_s: float) -> type[JsonH11Protocol]:
    """A JsonH11Protocol with these limits, for uvicorn.Config(http=...)."""
    limits = {"max_connections": max_connections, "head_timeout_s": head_timeout_s}
    return type("JsonH11Protocol", (JsonH11Protocol,), limits)
