"""Processes and raw connections for the data-plane tests (`tests/security/`).

A forwarder process in front of an engine process (`tests.support.slow_engine` or
`tests.fakes.engine`), requests sent over raw sockets (so a test can walk away from one
mid-answer), the forwarder's in-flight gauge, and polling with a generous deadline
(a liveness bound, never a timing assertion).
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from llm_launch.runtime.forwarder.cli import TOKEN_ENV
from tests.support.processes import WAIT_S, Process
from tests.support.server import free_port

__all__ = ["TOKEN_ENV", "WAIT_S", "Process"]


def start_slow_engine(log_dir: Path) -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.slow_engine", "--port", str(port)]
    return Process(argv, port, log_dir / f"slow-engine-{port}.log")


def start_forwarder(engine_url: str, log_dir: Path, *args: str, token: str | None) -> Process:
    """A forwarder process given `token` the way the backends give it (the environment),
    or none at all (then `args` must say `--no-token`)."""
    port = free_port()
    argv = [sys.executable, "-m", "llm_launch.runtime.forwarder", "--port", str(port),
            "--engine-url", engine_url, "--log-level", "warning", *args]  # fmt: skip
    env = {TOKEN_ENV: token} if token is not None else {}
    return Process(argv, port, log_dir / f"forwarder-{port}.log", env)


def engine_state(engine: Process) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{engine.url}/fake/state", timeout=10).json()
    return state


def in_flight(forwarder_url: str) -> int:
    """The forwarder's `llm_launch_requests_in_flight` gauge (from /metrics)."""
    text = httpx.get(f"{forwarder_url}/metrics", timeout=10).text
    match = re.search(r"^llm_launch_requests_in_flight (\d+)$", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1))


def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        time.sleep(0.05)


def open_request(
    port: int,
    path: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> socket.socket:
    """Send a POST over a fresh connection and return the socket without reading the
    answer: closing it is a client walking away."""
    content = orjson.dumps(body)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {len(content)}"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + content)
    return sock


def status_of(sock: socket.socket) -> int:
    """The status code of the answer on `sock` (reads its first line)."""
    first = b""
    while b"\r\n" not in first:
        chunk = sock.recv(4096)
        if not chunk:
            break
        first += chunk
    return int(first.split(b" ", 2)[1])
