"""Look at the processes the local backend runs for an endpoint (from its group records)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from llm_launch.backends.local.backend import LocalBackend
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body


def stored_endpoint(endpoint_id: str, name: str, **overrides: Any) -> Endpoint:
    """A one-group SGLang endpoint of alice's as the store hands it to a backend."""
    now = datetime.now(UTC)
    body = endpoint_body(**{"inference_framework": "sglang", "name": name,
                            "min_workers": 1, "max_workers": 1, **overrides})  # fmt: skip
    spec = build_spec(body, load_hardware_catalog())
    return Endpoint(
        endpoint_id, "alice", spec, EndpointStatus.UPDATE_PENDING, None, 1, now, now,
        forwarder_token=f"{name}-test-token-0123456789abcdef",
    )  # fmt: skip


@asynccontextmanager
async def simulated_backend(
    data_dir: Path, first_port: int, endpoint: Endpoint, **options: Any
) -> AsyncIterator[LocalBackend]:
    """A local backend running simulated engines on 100 ports from `first_port`; tears
    `endpoint` down and closes on the way out. `options` go to LocalBackend."""
    ports = PortAllocator(first=first_port, last=first_port + 99)
    backend = LocalBackend(data_dir, "simulated", ports, **options)
    try:
        yield backend
    finally:
        await backend.teardown(endpoint)
        await backend.close()


def group_records(data_dir: Path, endpoint_id: str) -> list[dict[str, Any]]:
    path = data_dir / "local-backend" / f"{endpoint_id}.json"
    if not path.exists():
        return []
    groups: list[dict[str, Any]] = json.loads(path.read_text())["groups"]
    return groups


def forwarder_url(data_dir: Path, endpoint_id: str, group: int = 0) -> str | None:
    """The base URL of a group's forwarder, or None while the group is not recorded yet."""
    records = group_records(data_dir, endpoint_id)
    if len(records) <= group:
        return None
    return f"http://127.0.0.1:{records[group]['ports']['forwarder']}"


def forwarder_token(database: Path, endpoint_id: str) -> str:
    """The endpoint's forwarder token, read from the server's SQLite database (a test or
    bench calling a forwarder directly needs it; the API never shows it)."""
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT forwarder_token FROM endpoints WHERE id = ?", (endpoint_id,))
        (token,) = row.fetchone()
    return str(token)


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None if it is gone (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1]


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live processes whose environment has `name=value` (inherited markers)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or cmdline(int(entry.name)) is None:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ:
            found.append(int(entry.name))
    return found


def kill_marked(marker: str, value: str | Path) -> None:
    """SIGKILL every live process whose environment has `marker=value`: the local groups of
    a test server started with that variable passed on to them (LLM_LAUNCH_PASS_ENV). The
    local backend detaches groups so that they outlive a server, as across a restart, so a
    test that stops its server must end them itself."""
    for pid in processes_with_env(marker, str(value)):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


def wait_for(
    client: httpx.Client,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Poll the endpoint until `done(endpoint)`; fail with its last status if it never is."""
    deadline = time.monotonic() + timeout
    endpoint: dict[str, Any] = {}
    while time.monotonic() < deadline:
        endpoint = client.get(f"/v1/llm/model-endpoints/{name}").json()
        if done(endpoint):
            return endpoint
        time.sleep(0.2)
    raise AssertionError(
        f"endpoint {name} did not reach the wanted state in {timeout}s; last: "
        f"{endpoint.get('status')} {endpoint.get('spec', {}).get('status_reason')}"
    )
