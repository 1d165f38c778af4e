"""Start a real `llm-launch serve` process on a free port, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(
    what: str,
    process: subprocess.Popen[bytes],
    url: str,
    log: Callable[[], str],
    timeout: float,
) -> None:
    """Wait until `url`/healthz answers 200; RuntimeError with the log if `process` exits
    first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{log()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not become healthy in {timeout}s:\n{log()}")


class RunningServer:
    """An `llm-launch serve` subprocess. `url` is its base URL once `start()` returns."""

    def __init__(self, database_url: str, data_dir: Path, env: Mapping[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"server-{self.port}.log"
        self._args = [
            sys.executable,
            "-m",
            "llm_launch",
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            database_url,
            "--data-dir",
            str(data_dir),
        ]
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> RunningServer:
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self._args, env=self._env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_healthy("server", self._process, self.url, self.log, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# The local backend with the simulated engine: processes here, no GPU needed.
SIMULATED_LOCAL_ENV = {"LLM_LAUNCH_BACKEND": "local", "LLM_LAUNCH_ENGINE_MODE": "simulated"}


def simulated_local_server(
    data_dir: Path, env: Mapping[str, str], database_url: str | None = None
) -> RunningServer:
    """A (not yet started) server running endpoints as local simulated groups; SQLite in
    `data_dir` unless `database_url` is given."""
    url = database_url or f"sqlite:///{data_dir / 'db.sqlite'}"
    return RunningServer(url, data_dir, {**SIMULATED_LOCAL_ENV, **env})
