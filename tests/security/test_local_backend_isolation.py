"""Issue 8, local backend: what one endpoint's groups do never costs another owner ports,
process slots or secrets. Fast tests drive EndpointRuntime directly; the environment
test reads /proc of the processes a real server spawned."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llm_launch.backends.local import group as group_module
from llm_launch.backends.local.backend import LocalBackend
from llm_launch.backends.local.controller import EndpointRuntime
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.backends.local.processes import LocalProcess, process_start_time
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body


def an_endpoint(endpoint_id: str = "end_00000001", **overrides: Any) -> Endpoint:
    now = datetime.now(UTC)
    body = endpoint_body(inference_framework="sglang", **overrides)
    spec = build_spec(body, load_hardware_catalog())
    return Endpoint(endpoint_id, "alice", spec, EndpointStatus.UPDATE_PENDING, None, 1, now, now)


def always_free(host: str, port: int) -> bool:
    return True


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    # Three ports: exactly one single-node group (forwarder, rendezvous, engine).
    ports = PortAllocator(first=41200, last=41202, is_free=always_free)
    yield LocalBackend(tmp_path, "simulated", ports)


def a_runtime(backend: LocalBackend, endpoint: Endpoint) -> EndpointRuntime:
    return backend._new_runtime(endpoint)


def test_a_group_that_cannot_spawn_releases_its_ports(backend: LocalBackend) -> None:
    runtime = a_runtime(backend, an_endpoint())
    runtime.base_env = {"BROKEN": "a\0b"}  # Popen refuses it: ValueError, embedded null byte
    for _ in range(3):  # every supervision step tries again
        with pytest.raises(ValueError, match="null byte"):
            runtime._converge()
    assert runtime.groups == {}
    assert len(backend._ports.allocate(3)) == 3  # all three ports are free again


def test_ranks_already_spawned_are_stopped_when_a_later_rank_cannot_spawn(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[LocalProcess] = []
    real_spawn = LocalProcess.spawn

    def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> LocalProcess:
        if name == "rank-1":
            raise OSError("cannot spawn rank 1")
        process = real_spawn(name, argv, env, log)
        spawned.append(process)
        return process

    monkeypatch.setattr(group_module.LocalProcess, "spawn", staticmethod(spawn))
    backend._ports = PortAllocator(first=41200, last=41203, is_free=always_free)
    endpoint = an_endpoint(nodes_per_worker=2, gpus=2, num_shards=2)
    runtime = a_runtime(backend, endpoint)
    runtime.ports = backend._ports
    with pytest.raises(OSError, match="cannot spawn rank 1"):
        runtime._converge()
    assert [p.name for p in spawned] == ["rank-0"]
    assert all(process_start_time(p.pid) is None for p in spawned)  # rank 0 was stopped
    assert len(backend._ports.allocate(4)) == 4
