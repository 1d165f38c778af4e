"""GET's per-group detail (`spec.groups`) through a real server on the local backend: each
group's processes, phase, restarts and last cause; a killed forwarder restarted alone,
said so in the server's own log; restart history that survives a server restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import endpoint_body
from tests.support.local_groups import group_records, kill_marked, wait_for
from tests.support.server import RunningServer, simulated_local_server

KEY = "detail-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"
NAME = "detailed"


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {"LLM_LAUNCH_API_KEYS": f"alice:{KEY}", MARKER: str(data_dir),
                    "LLM_LAUNCH_PASS_ENV": MARKER}  # fmt: skip
        self.server = self.start()

    def start(self) -> RunningServer:
        self.server = simulated_local_server(self.data_dir, self.env).start()
        self.client = httpx.Client(base_url=self.server.url, headers={"x-api-key": KEY}, timeout=60)
        return self.server

    def create_ready(self) -> dict[str, Any]:
        body = endpoint_body(name=NAME, inference_framework="sglang", min_workers=1,
                             max_workers=1, nodes_per_worker=2, gpus=2, num_shards=2)  # fmt: skip
        assert self.client.post("/v1/llm/model-endpoints", json=body).status_code == 200
        return self.wait(lambda e: e["status"] == "READY")

    def wait(self, done: Any) -> dict[str, Any]:
        return wait_for(self.client, NAME, done)

    def pids(self, endpoint: dict[str, Any]) -> dict[str, int]:
        (record,) = group_records(self.data_dir, str(endpoint["id"]))
        return {p["name"]: p["pid"] for p in record["processes"]}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    try:
        yield running
    finally:
        running.server.stop()
        kill_marked(MARKER, tmp_path)


def test_get_shows_each_group_with_its_processes_phase_restarts_and_no_cause_yet(
    local: Server,
) -> None:
    endpoint = local.create_ready()
    (group,) = endpoint["spec"]["groups"]
    pids = local.pids(endpoint)
    assert {k: group[k] for k in ("index", "generation", "ready", "phase", "restarts")} == {
        "index": 0, "generation": 1, "ready": True, "phase": "ready", "restarts": 0,
    }  # fmt: skip
    assert (group["forwarder_restarts"], group["last_cause"]) == (0, None)
    assert group["processes"] == [
        {"name": name, "pid": pids[name], "alive": True, "progress": None}
        for name in ("rank-0", "rank-1", "forwarder")
    ]
    listed = local.client.get("/v1/llm/model-endpoints").json()["model_endpoints"]
    assert listed[0]["spec"]["groups"] == endpoint["spec"]["groups"]


def test_a_killed_forwarder_comes_back_alone_and_the_server_log_says_why(local: Server) -> None:
    endpoint = local.create_ready()
    before = local.pids(endpoint)
    os.kill(before["forwarder"], signal.SIGKILL)

    down = local.wait(lambda e: "forwarder killed by SIGKILL" in e["spec"]["status_reason"])
    assert down["status"] == "UPDATE_IN_PROGRESS"
    again = local.wait(lambda e: e["status"] == "READY")
    after = local.pids(again)
    assert (after["rank-0"], after["rank-1"]) == (before["rank-0"], before["rank-1"])
    assert after["forwarder"] != before["forwarder"]
    (group,) = again["spec"]["groups"]
    assert (group["restarts"], group["forwarder_restarts"]) == (0, 1)
    assert group["last_cause"]["kind"] == "forwarder-exited"
    logged = [
        line
        for line in local.server.log().splitlines()
        if "forwarder killed by SIGKILL; forwarder restarted at" in line
    ]
    assert len(logged) == 1 and f"endpoint {NAME}: group 0:" in logged[0]


def test_restart_history_and_the_last_cause_survive_a_server_restart(local: Server) -> None:
    endpoint = local.create_ready()
    os.kill(local.pids(endpoint)["rank-1"], signal.SIGKILL)
    local.wait(lambda e: e["status"] != "READY")
    recovered = local.wait(lambda e: e["status"] == "READY" and e["spec"]["groups"][0]["ready"])
    (before,) = recovered["spec"]["groups"]
    assert before["restarts"] == 1 and before["last_cause"]["process"] == "rank-1"

    local.server.stop()
    local.start()
    adopted = local.wait(lambda e: e["status"] == "READY")
    assert local.pids(adopted) == local.pids(recovered)  # adopted, not restarted
    (after,) = adopted["spec"]["groups"]
    assert after["restarts"] == 1
    assert after["last_cause"] == before["last_cause"]
    assert "None" not in adopted["spec"]["status_reason"]
    assert adopted["spec"]["status_reason"].startswith("ready; simulated engine")
