"""Issue 8, local backend: what one endpoint's groups do never costs another owner ports,
process slots or secrets. Fast tests drive EndpointRuntime directly; the environment
test reads /proc of the processes a real server spawned."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_launch.backends.local import group as group_module
from llm_launch.backends.local.backend import LocalBackend, observe_runtime
from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.controller import EndpointRuntime
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.backends.local.processes import LocalProcess, process_start_time
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body
from tests.support.deletes import wait_until_deleted
from tests.support.local_groups import group_records, processes_with_env, wait_for
from tests.support.server import RunningServer, simulated_local_server


def an_endpoint(endpoint_id: str = "end_00000001", **overrides: Any) -> Endpoint:
    now = datetime.now(UTC)
    body = endpoint_body(**{"inference_framework": "sglang", **overrides})
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
    backend._capacity = Capacity(backend._ports)
    endpoint = an_endpoint(nodes_per_worker=2, gpus=2, num_shards=2)
    runtime = a_runtime(backend, endpoint)
    with pytest.raises(OSError, match="cannot spawn rank 1"):
        runtime._converge()
    assert [p.name for p in spawned] == ["rank-0"]
    assert all(process_start_time(p.pid) is None for p in spawned)  # rank 0 was stopped
    assert len(backend._ports.allocate(4)) == 4


# -- a real server: what its spawned processes see, and what it leaves on disk ----------

KEY = "alice-key-secret-0123456789"
DB_PASSWORD = "db-password-never-in-children"
SERVER_ENV = {
    "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
    # Overridden by --database-url, but still in the server's environment, as it is for
    # an operator who configures the server through variables.
    "LLM_LAUNCH_DATABASE_URL": f"postgresql://launch:{DB_PASSWORD}@db.invalid/launch",
    "SOME_UNRELATED_SECRET": "unrelated-secret-value",
    "AWS_SECRET_ACCESS_KEY": "weights-store-secret",  # the operator passes it on purpose
    "LLM_LAUNCH_PASS_ENV": "AWS_*",
}


@dataclass
class Served:
    server: RunningServer
    client: httpx.Client
    data_dir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("isolation")
    server = simulated_local_server(data_dir, SERVER_ENV).start()
    client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60)
    try:
        yield Served(server, client, data_dir)
    finally:
        client.close()
        server.stop()
        for record_file in (data_dir / "local-backend").glob("*.json"):
            for group in json.loads(record_file.read_text())["groups"]:
                for process in group["processes"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process["pid"], signal.SIGKILL)


def a_ready_endpoint(served: Served, **overrides: Any) -> dict[str, Any]:
    body = endpoint_body(**{"inference_framework": "sglang", **overrides})
    assert served.client.post("/v1/llm/model-endpoints", json=body).status_code == 200
    return wait_for(served.client, body["name"], lambda e: e["status"] == "READY")


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}


def test_spawned_processes_never_see_the_servers_secrets(served: Served) -> None:
    endpoint = a_ready_endpoint(served, nodes_per_worker=2, gpus=2, num_shards=2)
    processes = [p for g in group_records(served.data_dir, endpoint["id"]) for p in g["processes"]]
    assert {p["name"] for p in processes} == {"rank-0", "rank-1", "forwarder"}
    for process in processes:
        env = environ(process["pid"])
        text = "\n".join(f"{k}={v}" for k, v in env.items())
        for secret in (KEY, DB_PASSWORD, "unrelated-secret-value"):
            assert secret not in text, f"{process['name']} sees {secret!r}"
        assert "LLM_LAUNCH_API_KEYS" not in env and "LLM_LAUNCH_DATABASE_URL" not in env
        assert env["AWS_SECRET_ACCESS_KEY"] == "weights-store-secret"  # --pass-env AWS_*
        assert env["PATH"] and env["LWS_GROUP_SIZE"] == "2"
    others = set(processes_with_env("LLM_LAUNCH_API_KEYS", f"alice:{KEY}")) - {served.server.pid}
    assert not others  # nor does anything those processes started


def test_files_and_folders_the_server_creates_are_private_to_its_user(served: Served) -> None:
    a_ready_endpoint(served)
    created = [p for p in served.data_dir.rglob("*") if not p.name.startswith("server-")]
    assert any(p.name.endswith("-wal") for p in created)  # the SQLite WAL is among them
    assert any(p.suffix == ".log" for p in created) and any(p.suffix == ".json" for p in created)
    loose = {str(p.relative_to(served.data_dir)): oct(p.stat().st_mode & 0o777)
             for p in created if p.stat().st_mode & 0o077}  # fmt: skip
    assert not loose


def test_the_logs_of_a_deleted_endpoint_go_with_it(served: Served) -> None:
    endpoint = a_ready_endpoint(served)
    name = endpoint["name"]
    assert list((served.data_dir / "logs").glob(f"{name}-*"))
    assert served.client.delete(f"/v1/llm/model-endpoints/{name}").status_code == 200
    wait_until_deleted(served.client, name)  # the teardown ends in the background
    assert not list((served.data_dir / "logs").glob(f"{name}-*"))


# -- capacity: wait instead of failing, and fairly --------------------------------------


def a_capacity(max_processes: int) -> Capacity:
    return Capacity(PortAllocator(first=41300, last=41399, is_free=always_free), max_processes)


def test_a_group_beyond_capacity_waits_saying_so_instead_of_failing(
    backend: LocalBackend,
) -> None:
    backend._capacity = a_capacity(max_processes=4)
    backend._capacity.adopt("end_other_owner", 3, [41300, 41301, 41302, 41303, 41304])
    runtime = a_runtime(backend, an_endpoint())
    runtime._converge()  # nothing is spawned: there is no room for its 2 processes
    assert runtime.groups == {}
    seen = observe_runtime(runtime, "simulated")
    assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert "waiting for capacity: a group needs 2 processes, 0 of 4 free" in (seen.reason or "")


def test_capacity_that_frees_up_goes_to_the_waiting_endpoint() -> None:
    capacity = a_capacity(max_processes=4)
    first = capacity.reserve("end_a", 1)
    second = capacity.reserve("end_a", 1)
    assert isinstance(first, list) and isinstance(second, list)
    assert capacity.reserve("end_b", 1) == (
        "waiting for capacity: a group needs 2 processes, 0 of 4 free"
    )
    capacity.release("end_a", 1, second)
    assert isinstance(capacity.reserve("end_b", 1), list)


def test_a_huge_endpoint_does_not_keep_a_small_one_from_starting() -> None:
    capacity = a_capacity(max_processes=6)
    assert isinstance(capacity.reserve("end_other", 1), list)  # 2 of 6 used
    assert capacity.reserve("end_huge", 7).startswith("waiting for capacity")  # needs 8
    assert isinstance(capacity.reserve("end_small", 1), list)


def test_an_endpoint_running_groups_yields_to_one_running_none() -> None:
    capacity = a_capacity(max_processes=6)
    assert isinstance(capacity.reserve("end_big", 1), list)
    second = capacity.reserve("end_big", 1)  # 4 of 6 used
    assert isinstance(second, list)
    assert capacity.reserve("end_late", 3).startswith("waiting for capacity")  # needs 4
    capacity.release("end_big", 1, second)  # 2 of 6 used, 4 free
    refused = capacity.reserve("end_big", 1)
    assert refused == (
        "waiting for capacity: yielding to an endpoint running fewer groups (4 processes)"
    )
    assert isinstance(capacity.reserve("end_late", 3), list)


def test_a_spec_that_could_never_fit_is_refused_before_it_is_stored(
    backend: LocalBackend,
) -> None:
    backend._capacity = a_capacity(max_processes=16)
    errors = backend.check(an_endpoint(min_workers=9, max_workers=9).spec)  # 18 processes
    assert [e.field for e in errors] == ["min_workers"]
    assert "--local-max-processes" in errors[0].message
    assert backend.check(an_endpoint(min_workers=8, max_workers=8).spec) == []


@pytest.mark.parametrize(
    "framework, key",
    [
        ("sglang", "nccl-port"),
        ("sglang", "nccl_po"),  # SGLang's parser reads an unambiguous prefix as the flag
        ("sglang", "grpc-port"),
        ("sglang", "disaggregation-bootstrap-port"),
        ("sglang", "enable-http-worker-reuseport"),
        ("vllm", "ray-port"),
        ("vllm", "data-parallel-rpc-port"),
    ],
)
def test_an_engine_may_not_choose_ports_on_the_shared_local_network(
    backend: LocalBackend, framework: str, key: str
) -> None:
    """Every local group shares this machine's network: an engine told to bind a port of
    its own choosing could take one that belongs to another owner's group."""
    spec = an_endpoint(inference_framework=framework, engine_args={key: 20004}).spec
    errors = backend.check(spec)
    assert [e.field for e in errors] == [f"engine_args.{key}"]
    assert "the local backend assigns every port itself" in errors[0].message


@pytest.mark.parametrize("key", ["enable-cache-report", "mm-feature-transport", "context-length"])
def test_flags_that_only_spell_port_inside_a_word_are_allowed(
    backend: LocalBackend, key: str
) -> None:
    spec = an_endpoint(engine_args={key: "1" if key == "context-length" else True}).spec
    assert backend.check(spec) == []
