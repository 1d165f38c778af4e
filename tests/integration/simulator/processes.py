"""Real `python -m llm_launch.simulator` processes on free loopback ports, always reaped.

Used by the simulator's integration tests through the `launch` fixture (conftest.py):
every process a test starts is killed at teardown, pass or fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Sim:
    """One simulator process; `url` is its HTTP base URL."""

    def __init__(self, argv: list[str], host: str, port: int, log_path: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://{url_host(host)}:{port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "llm_launch.simulator", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=timeout)

    def wait_serving(self, timeout: float = 30) -> Sim:
        def answers() -> bool:
            if self._process.poll() is not None:
                raise AssertionError(f"exited {self._process.returncode}:\n{self.log()}")
            try:
                return self.get("/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout, f"{self.url}/health\n{self.log()}")
        return self

    def wait_exit(self, timeout: float = 30) -> int:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.log()}") from None

    def running(self) -> bool:
        return self._process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            self._process.send_signal(sig)

    def kill(self) -> None:
        if self.running():
            self._process.send_signal(signal.SIGCONT)  # in case a test stopped it
            self._process.kill()
        self._process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
