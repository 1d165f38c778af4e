"""Fixtures for the simulator's integration tests: a `launch` factory that reaps its processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.integration.simulator.processes import Sim, free_port


class Launch(Protocol):
    def __call__(self, *argv: str, host: str = "127.0.0.1", name: str = "sim") -> Sim: ...


def _launcher(log_dir: Path, started: list[Sim]) -> Launch:
    def launch(*argv: str, host: str = "127.0.0.1", name: str = "sim") -> Sim:
        port = free_port(host)
        log_path = log_dir / f"{name}-{port}.log"
        sim = Sim([*argv, "--host", host, "--port", str(port)], host, port, log_path)
        started.append(sim)
        return sim

    return launch


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start simulator processes on free ports of `host`; all are killed at teardown."""
    started: list[Sim] = []
    try:
        yield _launcher(tmp_path, started)
    finally:
        for sim in started:
            sim.kill()


@pytest.fixture(scope="module")
def launch_for_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    """Like `launch`, for processes a whole test module shares."""
    started: list[Sim] = []
    try:
        yield _launcher(tmp_path_factory.mktemp("sims"), started)
    finally:
        for sim in started:
            sim.kill()
