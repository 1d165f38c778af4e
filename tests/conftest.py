"""Shared fixtures: a real server per database (SQLite and PostgreSQL), API keys, a store
on a fresh SQLite file, and the fake Kubernetes API server."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository
from tests.fakes.kube_api import FakeKubeApi
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef0000"
# The API tests need no running engines: the store-only backend keeps them fast.
API_KEYS_ENV = {
    "LLM_LAUNCH_API_KEYS": f"alice:{ALICE_KEY},bob:{BOB_KEY}",
    "LLM_LAUNCH_BACKEND": "none",
}


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A running `llm-launch serve` with two owners (alice, bob), on each database."""
    data_dir = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "sqlite":
        with _serving(f"sqlite:///{data_dir / 'launch.db'}", data_dir) as running:
            yield running
    else:
        with fresh_postgres_database() as url, _serving(url, data_dir) as running:
            yield running


@contextmanager
def _serving(url: str, data_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(url, data_dir, env=API_KEYS_ENV).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def alice(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-api-key": ALICE_KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def bob(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-api-key": BOB_KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    """A local server speaking the Kubernetes REST API (see tests/fakes/kube_api.py)."""
    api = FakeKubeApi().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EndpointRepository]:
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield EndpointRepository(engine)
    finally:
        await engine.dispose()


# What a group of the local backend runs: the startup program, the forwarder, the engine.
GROUP_PROGRAMS = (
    "llm_launch.runtime.startup",
    "llm_launch.runtime.forwarder",
    "llm_launch.simulator",
)


def _group_processes() -> dict[int, str]:
    """Live processes running a local group's programs: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(f"-m {program}" in command for program in GROUP_PROGRAMS):
            found[int(entry.name)] = command
    return found


@pytest.fixture(scope="module", autouse=True)
def no_groups_left_behind() -> Iterator[None]:
    """Fails the module whose tests leave local groups running: the local backend detaches
    them (they outlive a server, as across a restart), so a test that stops its server
    without deleting or killing them leaks processes and ports into every later test."""
    before = set(_group_processes())
    yield
    deadline = time.monotonic() + 10  # groups being stopped as the module ended
    while (left := {p: c for p, c in _group_processes().items() if p not in before}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "local group processes left running:\n" + "\n".join(left.values())
