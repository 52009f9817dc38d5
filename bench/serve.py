"""The extraction service under concurrency: one request alone vs N concurrent ones, over HTTP.

    python -m bench serve [--run RUN] [--starts 5] [--tries 5] [--concurrent 8]

Starts the real `python -m inference serve` on a free loopback port (`--starts` times, since a
server's first batches and the machine's other work move the figures), and for each start times
one single-abstract request and `--concurrent` simultaneous single-abstract requests, best of
`--tries` each, after one warm-up request. The service decodes requests that arrive within its
batch window as one batch, so N concurrent requests should cost far less than N one after
another; the target is N concurrent within 2x one. The texts are the abstracts of the repo's own
sample data (data/sample), one per request. RUN defaults to the newest tiny-cpu run (`make demo`
makes one); the server runs with torch's default threads (one per core, as a user's would) unless
`--threads N` says otherwise (the tests use 1).
-> bench/results/serve.json (--smoke: bench/work/smoke-results/serve.json)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    RESULTS,
    WORK,
    BenchError,
    environment,
    runs_of,
    shown,
    write_result,
)
from preprocessing.files import read_jsonl
from preprocessing.task import parse_prompt
from training.recipes import TINY_RECIPE

SAMPLE = REPO / "data" / "sample" / "sample_instruct.jsonl"
RATIO_TARGET = 2.0
START_TIMEOUT_S = 180.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, help=f"run to serve (default: newest {TINY_RECIPE})")
    parser.add_argument("--starts", type=int, default=5, help="server starts (default 5)")
    parser.add_argument("--tries", type=int, default=5, help="timings per start, best kept")
    parser.add_argument("--concurrent", type=int, default=8, help="simultaneous requests")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer budget")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the server (default: torch's, one per core)"
    )
    parser.add_argument("--out-dir", type=Path, help="also copy the result there")
    parser.add_argument(
        "--smoke", action="store_true", help="one start, one try, into bench/work/smoke-results"
    )


def sample_abstracts() -> list[str]:
    """The distinct abstracts of the repo's sample data, in file order."""
    abstracts: list[str] = []
    for _, row in read_jsonl(SAMPLE):
        parsed = parse_prompt(row["prompt"])
        if parsed and parsed[1] not in abstracts:
            abstracts.append(parsed[1])
    return abstracts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, text: str) -> float:
    """Seconds for one POST /extract of `text`; raises on anything but 200 with one result."""
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/extract", body, {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    seconds = time.perf_counter() - start
    if len(answer["results"]) != 1:
        raise BenchError(f"POST /extract answered {len(answer['results'])} results for 1 text")
    return seconds


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return json.loads(response.read())


def concurrent(port: int, texts: list[str]) -> tuple[float, int]:
    """(seconds until all answered, batches decoded) for one request per text, all at once."""
    errors: list[BaseException] = []

    def one(text: str) -> None:
        try:
            post(port, text)
        except BaseException as error:  # noqa: BLE001 - reported after the join
            errors.append(error)

    threads = [threading.Thread(target=one, args=(text,)) for text in texts]
    batches = health(port)["batches"]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise BenchError(f"a concurrent request failed: {errors[0]}")
    return seconds, health(port)["batches"] - batches


def start_server(run: Path, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [
        sys.executable, "-m", "inference", "serve", "--run", str(run), "--port", str(port),
        "--max-new-tokens", str(args.max_new_tokens),
    ]  # fmt: skip
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with log.open("a") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited ({process.returncode}); its log: {log}")
        try:
            if health(port)["ready"]:
                return process, port
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    process.kill()
    raise BenchError(f"the server did not answer /health within {START_TIMEOUT_S:g} s: {log}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_start(run: Path, args: argparse.Namespace, texts: list[str], log: Path) -> dict:
    """One server start: best-of-tries seconds for one request and for N concurrent ones."""
    process, port = start_server(run, args, log)
    try:
        post(port, texts[0])  # warm-up: the first batch pays one-time costs
        one = min(post(port, texts[0]) for _ in range(args.tries))
        group = [texts[n % len(texts)] for n in range(args.concurrent)]
        timings = [concurrent(port, group) for _ in range(args.tries)]
    finally:
        stop_server(process)
    many = min(seconds for seconds, _ in timings)
    return {
        "one_request_s": round(one, 4),
        "concurrent_s": round(many, 4),
        "ratio": round(many / one, 3),
        "batches_per_concurrent_group": sorted({batches for _, batches in timings}),
    }


def torch_default_threads() -> int:
    import torch

    return torch.get_num_threads()


def newest_tiny_run() -> Path:
    runs = sorted(runs_of(TINY_RECIPE))
    if not runs:
        raise BenchError(f"no {TINY_RECIPE} run in runs/: make one with `make demo` (CPU)")
    return runs[-1]


def run(args: argparse.Namespace) -> int:
    if args.smoke:
        args.starts, args.tries = 1, 1
    if min(args.starts, args.tries, args.concurrent, args.threads or 1) < 1:
        raise BenchError("--starts, --tries, --concurrent and --threads must be at least 1")
    served = args.run or newest_tiny_run()
    texts = sample_abstracts()
    log = WORK / "logs" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    starts = []
    for number in range(1, args.starts + 1):
        starts.append(measure_start(served, args, texts, log))
        last = starts[-1]
        print(f"start {number}/{args.starts}: one {last['one_request_s']:.3f} s, "
              f"{args.concurrent} concurrent {last['concurrent_s']:.3f} s "
              f"({last['ratio']:.2f}x)", flush=True)  # fmt: skip
    ratios = [start["ratio"] for start in starts]
    where = served.resolve()
    shown_run = where.relative_to(REPO) if where.is_relative_to(REPO) else served
    result = {
        "benchmark": "serve",
        "smoke": args.smoke,
        **environment(),
        "run": str(shown_run),
        "commands": [
            (f"OMP_NUM_THREADS={args.threads} " if args.threads else "")
            + f"python -m inference serve --run {shown_run} --max-new-tokens {args.max_new_tokens}",
            shown([sys.executable, "-m", "bench", "serve", *sys.argv[2:]]),
        ],
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": args.threads or torch_default_threads(),
        "concurrent": args.concurrent,
        "tries_per_start": args.tries,
        "texts": f"{len(texts)} abstracts of {SAMPLE.relative_to(REPO)}, one per request",
        "starts": starts,
        "ratio_min": min(ratios),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_max": max(ratios),
        "targets": {
            "ratio_at_most": RATIO_TARGET,
            "met_in_starts": sum(r <= RATIO_TARGET for r in ratios),
            "starts": len(ratios),
        },
    }
    results = WORK / "smoke-results" if args.smoke else RESULTS
    write_result("serve", result, results, args.out_dir)
    met = result["targets"]["met_in_starts"]
    print(f"{args.concurrent} concurrent / one: {min(ratios):.2f}-{max(ratios):.2f}x "
          f"(median {result['ratio_median']:.2f}x); within {RATIO_TARGET:g}x in {met} of "
          f"{len(ratios)} starts")  # fmt: skip
    return 0
