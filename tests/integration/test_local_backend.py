"""The local backend through a real server: updates roll, scaling, restarts of the server
(adoption, no orphans), crash loops, logs, and ports that never collide."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import endpoint_body
from tests.support.local_groups import (
    cmdline,
    group_records,
    kill_marked,
    processes_with_env,
    wait_for,
)
from tests.support.server import RunningServer, simulated_local_server

KEY = "local-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"


def sglang_body(**overrides: object) -> dict[str, object]:
    return endpoint_body(inference_framework="sglang", min_workers=1, max_workers=3, **overrides)


class Local:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        # Spawned processes get an allow-listed environment: pass the marker on purpose.
        self.env = {"LLM_LAUNCH_API_KEYS": f"alice:{KEY}", MARKER: str(data_dir),
                    "LLM_LAUNCH_PASS_ENV": MARKER, **env}  # fmt: skip
        self.server = self.start()

    def start(self) -> RunningServer:
        self.server = simulated_local_server(self.data_dir, self.env)
        self.client = httpx.Client(base_url=self.server.url, headers={"x-api-key": KEY}, timeout=60)
        return self.server.start()

    def create_ready(self, body: dict[str, object]) -> dict[str, object]:
        assert self.client.post("/v1/llm/model-endpoints", json=body).status_code == 200
        return wait_for(self.client, str(body["name"]), lambda e: e["status"] == "READY")

    def pids(self, endpoint: dict[str, object]) -> set[int]:
        records = group_records(self.data_dir, str(endpoint["id"]))
        return {p["pid"] for g in records for p in g["processes"]}

    def children(self) -> set[int]:
        return set(processes_with_env(MARKER, str(self.data_dir))) - {self.server.pid}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    running = Local(tmp_path)
    try:
        yield running
    finally:
        running.server.stop()
        kill_marked(MARKER, tmp_path)


def test_an_update_rolls_the_group_and_the_new_one_serves(local: Local) -> None:
    body = sglang_body()
    before = local.pids(local.create_ready(body))
    path = f"/v1/llm/model-endpoints/{body['name']}"
    assert local.client.put(path, json={"engine_args": {"context-length": 4096}}).status_code == 200
    after = wait_for(
        local.client, str(body["name"]),
        lambda e: e["status"] == "READY" and local.pids(e) and local.pids(e).isdisjoint(before),
    )  # fmt: skip
    rank0 = next(p["pid"] for g in group_records(local.data_dir, str(after["id"]))
                 for p in g["processes"] if p["name"] == "rank-0")  # fmt: skip
    argv = cmdline(rank0) or []
    assert "--context-length=4096" in argv
    assert all(cmdline(pid) is None for pid in before)


def test_min_workers_scales_the_number_of_groups(local: Local) -> None:
    body = sglang_body()
    local.create_ready(body)
    path = f"/v1/llm/model-endpoints/{body['name']}"
    local.client.put(path, json={"min_workers": 2})
    before = local.pids(local.client.get(path).json())
    two = wait_for(local.client, str(body["name"]), lambda e: available(e) == 2)
    assert before <= local.pids(two)  # the first group kept serving: nothing it runs changed
    records = group_records(local.data_dir, str(two["id"]))
    ports = [port for g in records for port in [g["ports"]["forwarder"], g["ports"]["rendezvous"],
                                                *g["ports"]["engines"]]]  # fmt: skip
    assert len(ports) == len(set(ports)) == 6  # no two processes share a port
    local.client.put(path, json={"min_workers": 1})
    wait_for(
        local.client, str(body["name"]),
        lambda e: e["status"] == "READY" and len(group_records(local.data_dir, str(e["id"]))) == 1,
    )  # fmt: skip


def available(endpoint: dict[str, object]) -> int:
    state = endpoint["spec"]["deployment_state"]  # type: ignore[index]
    return int(state["available_workers"]) if endpoint["status"] == "READY" else -1  # type: ignore[index]


def test_a_restarted_server_adopts_its_running_groups(local: Local) -> None:
    body = sglang_body()
    endpoint = local.create_ready(body)
    pids = local.pids(endpoint)
    local.server.stop()
    assert all(cmdline(pid) is not None for pid in pids)  # they keep serving
    local.start()
    again = wait_for(local.client, str(body["name"]), lambda e: e["status"] == "READY")
    assert local.pids(again) == pids
    assert local.children() == pids  # nothing else was started


def test_groups_of_an_endpoint_deleted_while_the_server_was_down_are_stopped(local: Local) -> None:
    endpoint = local.create_ready(sglang_body())
    pids = local.pids(endpoint)
    local.server.stop()
    with sqlite3.connect(local.data_dir / "db.sqlite") as db:
        db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint["id"],))
    local.start()
    wait_for_no_children(local)
    assert all(cmdline(pid) is None for pid in pids)


def wait_for_no_children(local: Local, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while local.children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not local.children()


def test_a_group_that_keeps_failing_is_update_failed_with_the_reason(tmp_path: Path) -> None:
    failing = Local(tmp_path, LLM_LAUNCH_ENGINE_PROGRAM=f"{sys.executable} -c 'import sys; "
                    "print(\"CUDA out of memory\"); sys.exit(3)'")  # fmt: skip
    try:
        body = sglang_body()
        failing.client.post("/v1/llm/model-endpoints", json=body)
        endpoint = wait_for(
            failing.client, str(body["name"]), lambda e: e["status"] == "UPDATE_FAILED"
        )
        reason = endpoint["spec"]["status_reason"]
        assert "leader (rank 0) exited with status 3; group recreated at " in reason
        assert "CUDA out of memory" not in reason  # the log: in the group's detail, not here
        cause = endpoint["spec"]["groups"][0]["last_cause"]
        assert (cause["process"], cause["exit_code"]) == ("rank-0", 3)
        assert "CUDA out of memory" in cause["excerpt"]
    finally:
        failing.server.stop()
        kill_marked(MARKER, tmp_path)


def test_logs_of_each_rank_and_the_forwarder_are_readable_from_the_cli(local: Local) -> None:
    body = sglang_body(nodes_per_worker=2, gpus=2, num_shards=2)
    local.create_ready(body)
    cli = str(Path(sys.executable).parent / "llm-launch")
    env = {**os.environ, "LLM_LAUNCH_URL": local.server.url, "LLM_LAUNCH_API_KEY": KEY}
    worker = subprocess.run([cli, "endpoints", "logs", str(body["name"]), "--rank", "1"],
                            capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "rank 1" in worker.stdout
    missing = subprocess.run([cli, "endpoints", "logs", str(body["name"]), "--rank", "5"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr


def test_a_not_ready_endpoint_answers_503_with_its_status(tmp_path: Path) -> None:
    slow = Local(
        tmp_path, LLM_LAUNCH_ENGINE_PROGRAM=f"{sys.executable} -c 'import time; time.sleep(60)'"
    )
    try:
        body = sglang_body()
        slow.client.post("/v1/llm/model-endpoints", json=body)
        request = {"prompt": "x", "max_new_tokens": 1, "temperature": 0.0}
        response = slow.client.post(
            "/v1/llm/completions-sync", params={"model_endpoint_name": body["name"]}, json=request
        )
        assert response.status_code == 503
        assert "no ready workers" in response.json()["detail"]
    finally:
        slow.server.stop()
        kill_marked(MARKER, tmp_path)


def test_an_endpoint_that_could_never_get_its_ports_is_refused_saying_so(tmp_path: Path) -> None:
    cramped = Local(tmp_path, LLM_LAUNCH_LOCAL_PORTS="40100-40102")  # a 2-node group needs 4
    try:
        body = sglang_body(nodes_per_worker=2, gpus=2, num_shards=2)
        refused = cramped.client.post("/v1/llm/model-endpoints", json=body)
        assert refused.status_code == 422
        assert "need more than the 3 ports of --local-ports 40100-40102" in refused.text
    finally:
        cramped.server.stop()
        kill_marked(MARKER, tmp_path)
