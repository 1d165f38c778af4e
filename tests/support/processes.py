"""A child process that serves on a TCP port (an engine, a forwarder), for tests.

Started with the test's environment less any forwarder token (a token must be given on
purpose, as `env`), waited for until it listens, stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from llm_launch.runtime.forwarder.cli import TOKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0  # upper bound on any wait: a liveness limit, not a timing assertion


class Process:
    """A child process listening on `port`; `stop()` ends it."""

    def __init__(
        self, argv: list[str], port: int, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**environ, **(env or {})}
            )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited {self.process.returncode}:\n{self.log.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"not listening on {self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_fake_engine(log_dir: Path) -> Process:
    """`tests.fakes.engine` (SGLang's and OpenAI's routes, scripted) on a free port."""
    from tests.support.server import free_port

    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.engine", "--port", str(port)]
    return Process(argv, port, log_dir / "engine.log")
