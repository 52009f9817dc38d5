"""`python -m inference serve`: the real server in a subprocess on a free loopback port, driven
with raw sockets and http.client; every adversarial request must get a JSON 4xx (never a 500,
never a traceback) while /health stays responsive.

One server (the tiny-cpu run) serves the module; the API-key tests start a second one.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import conftest
import pytest

pytestmark = pytest.mark.slow

ABSTRACT = "Cisplatin treatment was followed by acute kidney injury in three patients."
OTHER = "Lithium therapy was associated with nephrogenic diabetes insipidus in two patients."
MAX_NEW_TOKENS = 16
READ_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 12
MAX_TEXTS = 4


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")


def start_server(run_dir: Path, log: Path, *extra: str, env: dict | None = None) -> Server:
    """The CLI on a free port; returns once /health answers."""
    port = conftest.closed_port()
    command = [
        conftest.PYTHON, "-m", "inference", "serve", "--run", str(run_dir),
        "--port", str(port), "--max-new-tokens", str(MAX_NEW_TOKENS), *extra,
    ]  # fmt: skip
    # One torch thread: on a CPU shared with other work, two threads oversubscribe it and make
    # every timing noise (the batching test compares timings).
    env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=conftest.REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if request(server, "GET", "/health", timeout=2)[0] == 200:
                return server
        except OSError:
            time.sleep(0.3)
    process.kill()
    pytest.fail(f"server not up within 180 s:\n{server.log_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    # As in a shell where Axolotl's logging defaults were exported: accelerate then lowers the
    # root logger's level, and the access log must not go quiet.
    env = {**os.environ, "ACCELERATE_LOG_LEVEL": "WARNING"}
    running = start_server(
        tiny_run, log,
        "--read-timeout", str(READ_TIMEOUT_S),
        "--max-connections", str(MAX_CONNECTIONS),
        "--max-texts", str(MAX_TEXTS),
        env=env,
    )  # fmt: skip
    yield running
    stop_server(running)
    assert "Traceback" not in running.log_text()


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict | None, dict]:
    """(status, JSON body or None, lower-cased headers) of one HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        sent = {"Content-Type": "application/json", **(headers or {})} if body is not None else {}
        connection.request(method, path, body=body, headers=sent or headers or {})
        response = connection.getresponse()
        data = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        is_json = headers.get("content-type", "").startswith("application/json")
        return response.status, json.loads(data) if data and is_json else None, headers
    finally:
        connection.close()


def post(server: Server, payload, headers: dict[str, str] | None = None):
    return request(server, "POST", "/extract", json.dumps(payload).encode(), headers)


def exchange(
    server: Server, data: bytes, half_close: bool = False, timeout: float = 10
) -> tuple[int, dict | None, float]:
    """Raw bytes in, (status, JSON body, seconds until the server closed) out."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    return (*parse_response(reply), time.monotonic() - start)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(reply: bytes) -> tuple[int, dict | None]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), reply[:200]
    assert b"content-type: application/json" in head.lower(), reply[:300]
    return int(head.split()[1]), json.loads(body) if body else None


def post_head(length: int | str, extra: str = "") -> bytes:
    return (
        "POST /extract HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def assert_healthy(server: Server) -> None:
    start = time.monotonic()
    status, body, _ = request(server, "GET", "/health", timeout=5)
    assert (status, body["ready"]) == (200, True)
    assert time.monotonic() - start < 1


# ---- the model's answers -------------------------------------------------------------------


def test_health_and_docs(server, tiny_run):
    status, health, _ = request(server, "GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["ready"] is True
    assert health["run"] == str(tiny_run) and health["adapter"] == str(tiny_run)
    assert health["queue_depth"] == 0
    status, _, headers = request(server, "GET", "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    status, spec, _ = request(server, "GET", "/openapi.json")
    body_schema = spec["paths"]["/extract"]["post"]["requestBody"]["content"]["application/json"]
    assert body_schema["schema"]["additionalProperties"] is False
    assert set(body_schema["schema"]["properties"]) == {"text", "texts"}


def test_answers_equal_the_extractor_called_directly(server, tiny_run):
    from inference.extract import Extractor

    extractor = Extractor(tiny_run, max_new_tokens=MAX_NEW_TOKENS)
    status, body, headers = post(server, {"texts": [ABSTRACT, OTHER]})
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert body["results"] == extractor.extract([ABSTRACT, OTHER])
    status, body, _ = post(server, {"text": ABSTRACT})
    assert status == 200 and body["results"] == extractor.extract([ABSTRACT])
    for result in body["results"]:
        assert set(result) == {"chemicals", "diseases", "relations", "format_errors"}


def timed_post(server: Server, payload, out: list) -> None:
    start = time.monotonic()
    status, body, _ = post(server, payload)
    out.append((status, len(body["results"]), time.monotonic() - start))


def eight_at_once(server: Server, health_seconds: list[float]) -> tuple[float, int]:
    """(seconds, extract calls) for 8 concurrent single-abstract requests; /health polled."""
    results: list = []
    threads = [
        threading.Thread(target=timed_post, args=(server, {"text": f"{ABSTRACT} {n}"}, results))
        for n in range(8)
    ]
    batches_before = request(server, "GET", "/health")[1]["batches"]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        begin = time.monotonic()
        request(server, "GET", "/health", timeout=5)
        health_seconds.append(time.monotonic() - begin)
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - start
    assert [(status, count) for status, count, _ in results] == [(200, 1)] * 8
    return seconds, request(server, "GET", "/health")[1]["batches"] - batches_before


def test_eight_concurrent_requests_are_decoded_together(server):
    """8 concurrent requests: one extract call, and far less time than 8 one after another.

    Best of 3 each: the CPU is shared. The bound is 4x one request, not 1x: on CPU the tiny
    model's decode of 24 prompts is compute, ~2x that of 3 on a quiet machine (the HTTP layer
    adds no wait); a busy machine spreads it.
    """
    post(server, {"text": ABSTRACT})  # warm
    single: list = []
    for _ in range(3):
        timed_post(server, {"text": ABSTRACT}, single)
    one = min(seconds for _, _, seconds in single)
    health_seconds: list[float] = []
    tries = [eight_at_once(server, health_seconds) for _ in range(3)]
    eight = min(seconds for seconds, _ in tries)
    assert min(batches for _, batches in tries) == 1, tries
    assert eight <= 4 * one, f"8 concurrent: {eight:.2f} s; one alone: {one:.2f} s"
    assert max(health_seconds) < 1, health_seconds


def test_too_long_text_is_413_naming_the_token_limit(server, tiny_model):
    context = json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"]
    limit = context - MAX_NEW_TOKENS
    long_text = " ".join(f"compound{n} causes syndrome{n}" for n in range(600))
    assert len(long_text) < 20_000  # within the character limit: the token limit decides
    status, body, _ = post(server, {"text": long_text})
    assert status == 413, body
    assert f"at most {limit}" in body["error"] and "tokens" in body["error"]
    assert_healthy(server)


# ---- malformed requests: JSON 4xx within a second, the server fine afterwards ----------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "not UTF-8"),
        (DEEP, 400, "nested too deeply"),
        (b'{"text": ' + DEEP + b"}", 400, "nested too deeply"),
        (b"[]", 422, 'expected a JSON object with "text" or "texts"'),
        (b'{"abstract": "x"}', 422, 'unknown field "abstract"'),
        (b'{"text": "a", "extra": 1}', 422, 'unknown field "extra"'),
        (b'{"text": "a", "texts": ["b"]}', 422, 'either "text" or "texts"'),
        (b"{}", 422, 'either "text" or "texts"'),
        (b'{"text": 42}', 422, '"text": Input should be a valid string'),
        (b'{"text": "   "}', 422, '"text" is blank'),
        (b'{"texts": "abc"}', 422, '"texts": Input should be a valid list'),
        (b'{"texts": []}', 422, '"texts": List should have at least 1 item'),
        (b'{"texts": ["ok", null]}', 422, '"texts" item 2: Input should be a valid string'),
        (json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), 413, f"at most {MAX_TEXTS}"),
        (json.dumps({"text": "x" * 20_001}).encode(), 413, "at most 20000 characters"),
    ],
)
def test_bad_bodies_get_a_json_4xx(server, body, status, message):
    start = time.monotonic()
    got, payload, _ = request(server, "POST", "/extract", body)
    assert (got, message in payload["error"]) == (status, True), payload
    assert time.monotonic() - start < 1
    assert_healthy(server)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (post_head("\u0661\u0662") + b'{"text":"ab"}', 400, "must be ASCII digits"),
        (post_head(13, "Content-Length: 13\r\n") + b'{"text":"ab"}', 400, "given 2 times"),
        (post_head("13, 13") + b'{"text":"ab"}', 400, "must be ASCII digits"),
        (b"\x16\x03\x01\x02\x00 not http\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET /health HTTP/1.1\r\nHost t\r\n\r\n", 400, "malformed HTTP request"),
        (b"OPTIONS /extract HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, "OPTIONS"),
        (b"BREW /extract HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, "BREW"),
        (b"GET /extract HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, "GET"),
        (b"DELETE /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, "DELETE"),
        (b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "/nowhere"),
        (post_head(99_999_999, "Connection: close\r\n"), 413, "at most 1000000"),
        (
            b"POST /extract HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\n\r\n",
            411,
            "Content-Length is required",
        ),
        (
            b"POST /extract HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            415,
            "application/json",
        ),
    ],
)
def test_protocol_errors_get_a_json_4xx(server, data, status, message):
    got, payload, seconds = exchange(server, data)
    assert (got, message in payload["error"]) == (status, True), payload
    assert seconds < 1
    assert_healthy(server)


def test_head_gets_a_json_405_without_a_body(server):
    reply_status, payload, seconds = exchange(
        server, b"HEAD /extract HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert (reply_status, payload) == (405, None) and seconds < 1


def test_body_cut_short_by_a_half_close_is_400_at_once(server):
    status, payload, seconds = exchange(server, post_head(50) + b'{"text": "Cispl', half_close=True)
    assert status == 400 and "cut short" in payload["error"]
    assert seconds < 1
    assert_healthy(server)


def test_stalled_body_and_stalled_head_get_408(server):
    for data, what in [(post_head(50) + b'{"text": "Cispl', "body"), (post_head(50)[:30], "head")]:
        status, payload, seconds = exchange(server, data)
        assert status == 408 and what in payload["error"], payload
        assert READ_TIMEOUT_S - 0.2 < seconds < READ_TIMEOUT_S + 1
    assert_healthy(server)


def test_a_trickling_client_gets_408_at_the_whole_body_deadline(server):
    """One byte every 0.25 s never lets a per-read timeout fire; the deadline is for the body."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post_head(200))
        while not select.select([sock], [], [], 0.25)[0]:
            sock.sendall(b" ")
            assert time.monotonic() - start < READ_TIMEOUT_S + 2, "no answer to a trickle"
        status, payload = parse_response(read_until_closed(sock))
    assert status == 408 and "within" in payload["error"]
    assert time.monotonic() - start < READ_TIMEOUT_S + 1
    assert_healthy(server)


def test_connections_beyond_the_limit_get_503(server):
    address = ("127.0.0.1", server.port)
    sockets = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        time.sleep(0.2)
        statuses = []
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, payload = parse_response(read_until_closed(sock))
            statuses.append(status)
            if status == 503:
                assert "server busy" in payload["error"]
    finally:
        for sock in sockets:
            sock.close()
    assert statuses.count(503) >= 2 and statuses.count(200) >= MAX_CONNECTIONS - 2, statuses
    assert_healthy(server)


def clients_left(server: Server) -> int:
    return request(server, "GET", "/health")[1]["clients_left"]


def wait_for(condition, server: Server, what: str, seconds: float = 30, poll_s: float = 0.05):
    deadline = time.monotonic() + seconds
    while not condition():
        tail = "\n".join(server.log_text().splitlines()[-12:])
        assert time.monotonic() < deadline, f"{what} not seen within {seconds:g} s; log:\n{tail}"
        time.sleep(poll_s)


def send_and_leave(server: Server, text: str, before_leaving=lambda: None) -> None:
    """One POST /extract whose client closes without reading the answer."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        body = json.dumps({"text": text}).encode()
        sock.sendall(post_head(len(body)) + body)
        before_leaving()


def test_a_client_leaving_early_is_counted_quietly_without_a_traceback(server):
    left = clients_left(server)
    # Closed right after sending: long before an answer can be ready (batch window + decoding).
    send_and_leave(server, ABSTRACT + " (gone at once)")
    wait_for(lambda: clients_left(server) == left + 1, server, "the departure")
    log = server.log_text()
    assert "Traceback" not in log and "BrokenPipe" not in log
    assert_healthy(server)


def leave_while_queued_behind_a_busy_batch(server: Server, answered: list) -> bool:
    """A full batch decodes; a second client's request queues behind it and the client leaves.
    False when the timing was missed (the batch done before it was seen), nothing asserted."""
    batches = request(server, "GET", "/health")[1]["batches"]
    busy = threading.Thread(
        target=timed_post, args=(server, {"texts": [OTHER] * MAX_TEXTS}, answered)
    )
    busy.start()
    seen: dict = {}

    def health() -> dict:
        seen.update(request(server, "GET", "/health")[1])
        return seen

    try:
        wait_for(lambda: health()["decoding"] > 0 or seen["batches"] > batches, server, "a batch",
                 poll_s=0)  # fmt: skip
        if seen["batches"] > batches:
            return False
        queued = lambda: health()["queue_depth"] > 0 or seen["batches"] > batches  # noqa: E731
        wait_until_queued = lambda: wait_for(queued, server, "the request", poll_s=0)  # noqa: E731
        send_and_leave(server, ABSTRACT + " (gone)", wait_until_queued)
        return seen["queue_depth"] > 0 and seen["batches"] == batches
    finally:
        busy.join()


def test_a_client_leaving_while_its_text_waits_is_decoded_then_dropped_quietly(server):
    """Its answer is decoded with nobody to take it: counted, logged once, no traceback, and
    the request decoding before it is answered as usual."""
    for _ in range(5):
        left, answered = clients_left(server), []
        if leave_while_queued_behind_a_busy_batch(server, answered):
            break
        time.sleep(1)  # a missed try's own departure, if any, is counted before the next
    else:
        pytest.skip("the busy batch always finished before the second request was queued")
    assert answered[0][:2] == (200, MAX_TEXTS)
    wait_for(lambda: clients_left(server) == left + 1, server, "the departure")
    log = server.log_text()
    assert "client left before its answer (1 text(s) decoded); answer dropped" in log
    assert "Traceback" not in log and "BrokenPipe" not in log
    assert_healthy(server)


# ---- binding, the API key, the port --------------------------------------------------------


def serve_cli(tiny_run: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return conftest.run_cli(["inference", "serve", "--run", tiny_run, *args], env=env, timeout=120)


def test_non_loopback_host_needs_an_api_key(tiny_run):
    env = {k: v for k, v in os.environ.items() if k != "SERVE_API_KEY"}
    start = time.monotonic()
    result = serve_cli(tiny_run, "--host", "0.0.0.0", "--port", "0", env=env)
    assert result.returncode == 2
    assert result.stdout.strip().splitlines() == [
        "error: --host 0.0.0.0 is reachable from other machines: set SERVE_API_KEY (clients then "
        "send 'Authorization: Bearer <key>') or keep the default 127.0.0.1"
    ]
    assert time.monotonic() - start < 30  # refused before the model loads


@pytest.mark.parametrize(
    ("port", "message"),
    [("99999", "expected a number from 0 to 65535"), ("abc", "expected a number"),
     ("in-use", "cannot listen on 127.0.0.1")],
)  # fmt: skip
def test_bad_port_is_one_line_before_the_model_loads(tiny_run, port, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if port == "in-use":
            port = str(taken.getsockname()[1])
        result = serve_cli(tiny_run, "--port", port)
    assert result.returncode == 2
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_api_key_guards_extract(tiny_run, tmp_path):
    key = "sk-" + "serve-test-key-" + "Zq81"
    env = {**os.environ, "SERVE_API_KEY": key}
    keyed = start_server(tiny_run, tmp_path / "keyed.log", "--host", "0.0.0.0", env=env)
    try:
        assert request(keyed, "GET", "/health")[0] == 200
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": key}]:
            status, payload, _ = post(keyed, {"text": ABSTRACT}, headers)
            assert status == 401 and "Bearer" in payload["error"], payload
        status, payload, _ = post(keyed, {"text": ABSTRACT}, {"Authorization": f"Bearer {key}"})
        assert status == 200 and len(payload["results"]) == 1
    finally:
        stop_server(keyed)
    log = keyed.log_text()
    assert key not in log and "Traceback" not in log


def test_a_failing_model_is_a_json_500_and_the_service_goes_on(caplog):
    """create_app takes any extractor: one whose first batch fails, in process."""
    from fastapi.testclient import TestClient

    from inference.serve import Settings, create_app

    class FailsOnce:
        max_prompt_tokens = 1_000
        calls = 0

        def prompt_tokens(self, text: str) -> int:
            return len(text)

        def extract(self, texts: list[str]) -> list[dict]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("out of memory")
            return [{"chemicals": [t], "diseases": [], "relations": [], "format_errors": []}
                    for t in texts]  # fmt: skip

    with TestClient(create_app(FailsOnce(), Settings())) as client:
        response = client.post("/extract", json={"text": "abc"})
        assert (response.status_code, response.json()) == (500, {"error": "extraction failed"})
        response = client.post("/extract", json={"texts": ["abc", "de"]})
        assert response.status_code == 200
        assert [r["chemicals"] for r in response.json()["results"]] == [["abc"], ["de"]]
        assert client.get("/health").json()["ready"] is True
    assert "extraction failed: RuntimeError: out of memory" in caplog.text
    assert "Traceback" not in caplog.text


def test_serve_benchmark_times_one_request_and_eight_decoded_as_one_batch(tiny_run):
    result_file = conftest.REPO / "bench" / "work" / "smoke-results" / "serve.json"
    result_file.unlink(missing_ok=True)
    done = subprocess.run(
        [conftest.PYTHON, "-m", "bench", "serve", "--smoke", "--run", str(tiny_run)],
        cwd=conftest.REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(result_file.read_text())
    (start,) = result["starts"]
    assert start["batches_per_concurrent_group"] == [1]  # the 8 requests: one extract call
    assert 0 < start["one_request_s"] < start["concurrent_s"]
    assert result["ratio_min"] == start["ratio"]
    assert start["ratio"] == pytest.approx(start["concurrent_s"] / start["one_request_s"], abs=0.01)
    assert "within 2x in" in done.stdout
