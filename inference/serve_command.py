"""Serve a run's extraction over HTTP (FastAPI + uvicorn): POST /extract, GET /health, /docs.

The command's options and checks (host, port, key, limits): all settled before the model loads
and before FastAPI is imported; the service itself is inference/serve.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys

from inference.serve_requests import API_KEY_VARIABLE, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inference.run import add_run_argument

    defaults = Settings()
    add_run_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine)")
    parser.add_argument("--port", default="8000", help="TCP port (0: any free one); default 8000")
    parser.add_argument("--merged", action="store_true", help="use RUN/merged, not the adapter")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-window-ms", type=float, default=defaults.batch_window_ms)
    parser.add_argument("--max-batch-texts", type=int, default=defaults.max_batch_texts)
    parser.add_argument("--max-texts", type=int, default=defaults.max_texts)
    parser.add_argument("--max-chars", type=int, default=defaults.max_chars)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout_s)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)


class UsageError(Exception):
    """A bad option, host or port: one line, exit 2, before the model loads."""


def settings_from(args: argparse.Namespace, api_key: str | None) -> Settings:
    counts = (args.max_new_tokens, args.max_batch_texts, args.max_texts, args.max_chars)
    if min(*counts, args.max_body_bytes, args.max_connections) < 1:
        raise UsageError("limits, --max-new-tokens and --max-connections must be at least 1")
    if args.max_batch_texts < args.max_texts:
        raise UsageError("--max-batch-texts must be at least --max-texts")
    if args.batch_window_ms < 0 or args.read_timeout <= 0:
        raise UsageError("--batch-window-ms must be >= 0 and --read-timeout > 0")
    return Settings(
        max_body_bytes=args.max_body_bytes,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        batch_window_ms=args.batch_window_ms,
        max_batch_texts=args.max_batch_texts,
        read_timeout_s=args.read_timeout,
        head_timeout_s=args.read_timeout,
        max_connections=args.max_connections,
        api_key=api_key,
    )


def is_loopback(host: str) -> bool:
    """True when every address `host` names is this machine's loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def bind_socket(host: str, port_text: str) -> socket.socket:
    """A listening-ready socket on host:port, or a UsageError saying why not."""
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65_535:
        raise UsageError(f"--port {port_text!r}: expected a number from 0 to 65535")
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, int(port_text), type=socket.SOCK_STREAM
        )[0]
    except OSError as error:
        raise UsageError(f"--host {host!r}: cannot resolve it ({error})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port_text}: {error.strerror}") from None
    return sock


def run(args: argparse.Namespace) -> int:
    from inference.run import no_run_message

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    # Our lines and uvicorn's keep INFO whatever happens to the root logger: accelerate sets the
    # root level to $ACCELERATE_LOG_LEVEL when transformers/peft import it (WARNING in any shell
    # where Axolotl's defaults were exported), which silenced the access log.
    for name in ("inference", "uvicorn"):
        logging.getLogger(name).setLevel(logging.INFO)
    # The JSON protocol logs each rejected request with its reason; uvicorn's own line is noise.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: record.getMessage() != "Invalid HTTP request received."
    )
    if args.run is None:
        print(no_run_message("serve"), file=sys.stderr)
        return 2
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    try:
        settings = settings_from(args, api_key)
        if api_key is None and not is_loopback(args.host):
            raise UsageError(
                f"--host {args.host} is reachable from other machines: set {API_KEY_VARIABLE} "
                "(clients then send 'Authorization: Bearer <key>') or keep the default 127.0.0.1"
            )
        sock = bind_socket(args.host, args.port)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with sock:
        from inference.serve import serve

        return serve(args, settings, sock)
