"""Start a real `llm-launch serve` process on a free port, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited {self._process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy in {timeout}s:\n{self.log()}")

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
