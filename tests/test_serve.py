"""`python -m eval serve`: a real server on a free loopback port, real HTTP requests, stopped after.

The model tests use the tiny-cpu run; the request-validation and locking tests use a stand-in
extractor, since they exercise the HTTP layer only.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from eval.serve import ExtractionServer, Limits, make_server
from inference.extract import Extractor

pytestmark = pytest.mark.slow

ABSTRACT = "Cisplatin treatment was followed by acute kidney injury in three patients."
LIMITS = Limits(max_body_bytes=4_000, max_texts=3, max_chars=1_000)


class StubExtractor:
    """Records how many extractions run at once; answers with a fixed well-formed result."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.active, self.most_active = delay, 0, 0
        self.guard = threading.Lock()

    def extract(self, texts: list[str]) -> list[dict]:
        with self.guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.delay)
        with self.guard:
            self.active -= 1
        return [
            {"chemicals": [t[:5]], "diseases": [], "relations": [], "format_errors": []}
            for t in texts
        ]


@contextmanager
def running(extractor, limits: Limits = LIMITS) -> Iterator[ExtractionServer]:
    server = make_server(extractor, "127.0.0.1", 0, limits, run="runs/test")  # 0: a free port
    # A short poll interval: shutdown() returns quickly, the tests stay fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def request(
    server: ExtractionServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one HTTP request to the server."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        if headers is not None and "Content-Length" not in headers and body is None:
            # http.client adds Content-Length by itself; send the request by hand without it.
            connection.putrequest(method, path)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
        else:
            connection.request(
                method,
                path,
                body=body,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
        response = connection.getresponse()
        payload = json.loads(response.read().decode("utf-8"))
        return response.status, payload, dict(response.getheaders())
    finally:
        connection.close()


def post_json(server: ExtractionServer, payload) -> tuple[int, dict, dict]:
    return request(server, "POST", "/extract", json.dumps(payload).encode("utf-8"))


@pytest.fixture(scope="module")
def extractor(tiny_run) -> Extractor:
    return Extractor(tiny_run, max_new_tokens=16)


def test_real_model_answers_over_http(extractor, tiny_run):
    with running(extractor) as server:
        status, health, _ = request(server, "GET", "/health")
        assert status == 200
        assert health["status"] == "ok" and health["run"] == "runs/test"
        assert health["adapter"] == str(tiny_run)

        status, body, headers = post_json(server, {"text": ABSTRACT})
        assert status == 200, body
        assert headers["Content-Type"].startswith("application/json")
        (result,) = body["results"]
        assert result == extractor.extract([ABSTRACT])[0]  # same as the Python API

        status, body, _ = post_json(server, {"texts": [ABSTRACT, "}{ garbage ]["]})
        assert status == 200 and len(body["results"]) == 2
        for result in body["results"]:
            assert set(result) == {"chemicals", "diseases", "relations", "format_errors"}
    # Stopped: nothing listens on the port any more.
    with pytest.raises(OSError):
        request(server, "GET", "/health")


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[]", 400, 'either "text" or "texts"'),
        (b'{"abstract": "x"}', 400, 'either "text" or "texts"'),
        (b'{"text": "a", "texts": ["b"]}', 400, 'either "text" or "texts"'),
        (b'{"text": 42}', 400, '"text" must be a non-empty string'),
        (b'{"text": "   "}', 400, '"text" must be a non-empty string'),
        (b'{"texts": "abc"}', 400, '"texts" must be a non-empty list'),
        (b'{"texts": []}', 400, '"texts" must be a non-empty list'),
        (b'{"texts": ["ok", null]}', 400, '"texts" item 2 must be a non-empty string'),
        (b'{"texts": ["a", "b", "c", "d"]}', 413, "at most 3 per request"),
        (json.dumps({"text": "x" * 1_001}).encode(), 413, "at most 1000"),
        (json.dumps({"text": "x" * 5_000}).encode(), 413, "at most 4000"),  # the body itself
    ],
)
def test_bad_bodies_get_a_clear_4xx(payload, status, message):
    stub = StubExtractor()
    with running(stub) as server:
        got, body, _ = request(server, "POST", "/extract", payload)
        assert (got, message in body["error"]) == (status, True), body
        # The server is still fine afterwards.
        assert post_json(server, {"text": "fine"})[0] == 200


def test_protocol_errors():
    with running(StubExtractor()) as server:
        status, body, _ = request(server, "GET", "/nowhere")
        assert status == 404 and "/nowhere" in body["error"]
        status, body, headers = request(server, "GET", "/extract")
        assert status == 405 and headers["Allow"] == "POST"
        status, _, headers = request(server, "DELETE", "/health")
        assert status == 405 and headers["Allow"] == "GET"
        status, body, _ = request(
            server, "POST", "/extract", b'{"text": "x"}', {"Content-Type": "text/plain"}
        )
        assert status == 415 and "application/json" in body["error"]
        status, body, _ = request(
            server, "POST", "/extract", headers={"Content-Type": "application/json"}
        )
        assert status == 411
        status, body, _ = request(server, "POST", "/extract", b"{}", {"Content-Length": "99999999"})
        assert status == 413


def test_generation_is_serialized():
    """Concurrent requests are all answered, but the model runs one request at a time."""
    stub = StubExtractor(delay=0.2)
    with running(stub) as server:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(post_json(server, {"text": "abc"})[0]))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert results == [200] * 4
    assert stub.most_active == 1


def test_extractor_failure_is_a_500_not_a_crash():
    class Broken(StubExtractor):
        def extract(self, texts):
            raise RuntimeError("out of memory")

    with running(Broken()) as server:
        status, body, _ = post_json(server, {"text": "abc"})
        assert status == 500 and body == {"error": "extraction failed"}
        assert request(server, "GET", "/health")[0] == 200
