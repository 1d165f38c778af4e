"""The simulated mode simulates the engine only: on the local backend, the startup program
fetches a reachable checkpoint as in real mode (a missing one fails the endpoint with the
fetch's error), and a multi-node vLLM group forms the way its plan says (a Ray head, workers
joining it, `vllm serve` with tensor- and pipeline-parallel sizes) before it is READY.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import endpoint_body
from tests.support.local_groups import (
    cmdline,
    group_records,
    kill_marked,
    wait_for,
)
from tests.support.server import RunningServer, simulated_local_server

KEY = "sim-e2e-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"
ENDPOINTS = "/v1/llm/model-endpoints"


class Server:
    def __init__(self, running: RunningServer, data_dir: Path, root: Path) -> None:
        self.running = running
        self.data_dir = data_dir
        self.root = root  # the server's checkpoint root
        self.client = httpx.Client(base_url=running.url, headers={"x-api-key": KEY}, timeout=60)

    def create(self, **fields: Any) -> dict[str, Any]:
        body = endpoint_body(**fields)
        response = self.client.post(ENDPOINTS, json=body)
        assert response.status_code == 200, response.text
        return body

    def processes(self, name: str) -> dict[str, int]:
        endpoint = self.client.get(f"{ENDPOINTS}/{name}").json()
        (group,) = group_records(self.data_dir, str(endpoint["id"]))
        return {p["name"]: p["pid"] for p in group["processes"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("local-simulation")
    root = tmp_path_factory.mktemp("checkpoints")
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
        "LLM_LAUNCH_CHECKPOINT_ROOTS": str(root),
        "LLM_LAUNCH_SIM_TTFT_MS": "1",
        "LLM_LAUNCH_SIM_TPOT_MS": "1",
        MARKER: str(data_dir),
        "LLM_LAUNCH_PASS_ENV": MARKER,
    }
    running = simulated_local_server(data_dir, env).start()
    try:
        yield Server(running, data_dir, root)
    finally:
        running.stop()
        kill_marked(MARKER, data_dir)


def settled(endpoint: dict[str, Any]) -> bool:
    return endpoint["status"] in ("READY", "UPDATE_FAILED")


def test_a_missing_local_checkpoint_fails_the_endpoint_with_the_fetch_error(
    server: Server,
) -> None:
    missing = f"file://{server.root}/nonexistent"
    body = server.create(checkpoint_path=missing)
    endpoint = wait_for(server.client, body["name"], settled)
    assert endpoint["status"] == "UPDATE_FAILED"
    reason = endpoint["spec"]["status_reason"]
    assert f"cannot fetch checkpoint {missing}: {server.root}/nonexistent does not exist" in reason


def test_an_empty_local_checkpoint_fails_as_in_real_mode(server: Server) -> None:
    (server.root / "empty").mkdir()
    body = server.create(checkpoint_path=str(server.root / "empty"))
    endpoint = wait_for(server.client, body["name"], settled)
    assert endpoint["status"] == "UPDATE_FAILED"
    assert f"{server.root}/empty is an empty directory" in endpoint["spec"]["status_reason"]


def test_a_small_local_checkpoint_is_fetched_and_given_to_the_simulated_engine(
    server: Server,
) -> None:
    checkpoint = server.root / "llama-3-8b"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "llama"}')
    body = server.create(checkpoint_path=f"file://{checkpoint}")
    wait_for(server.client, body["name"], lambda e: e["status"] == "READY")
    engine = cmdline(server.processes(body["name"])["rank-0"])
    assert engine is not None
    assert engine[engine.index("serve") + 1] == str(checkpoint)  # the fetched path, not the id


def test_a_multinode_vllm_group_forms_over_ray_as_its_plan_says_and_serves(
    server: Server,
) -> None:
    body = server.create(gpus=8, num_shards=8, gpu_type="nvidia-hopper-h100", nodes_per_worker=2)
    wait_for(server.client, body["name"], lambda e: e["status"] == "READY")
    processes = server.processes(body["name"])
    leader, worker = cmdline(processes["rank-0"]), cmdline(processes["rank-1"])
    assert leader is not None and worker is not None
    assert leader[3:5] == ["vllm", "serve"]
    assert leader[leader.index("--tensor-parallel-size") + 1] == "8"
    assert leader[leader.index("--pipeline-parallel-size") + 1] == "2"
    assert leader[leader.index("--distributed-executor-backend") + 1] == "ray"
    assert worker[3:5] == ["ray", "start"] and "--block" in worker
    answer = server.client.post(
        "/v1/llm/completions-sync",
        params={"model_endpoint_name": body["name"]},
        json={"prompt": "Hello", "max_new_tokens": 2, "temperature": 0.0},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["num_completion_tokens"] == 2
