"""The whole path on one machine: the runbook body, unchanged, becomes a READY endpoint
of two simulated ranks that rendezvoused, serves completions on every route, survives the
loss of its worker, and leaves no process behind when deleted. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.builders import seed_body
from tests.support.databases import fresh_postgres_database
from tests.support.deletes import wait_until_deleted
from tests.support.local_groups import group_records, kill_marked, processes_with_env, wait_for
from tests.support.server import RunningServer, simulated_local_server

KEY = "e2e-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"
SERVER_ENV = {
    "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
    "LLM_LAUNCH_SIM_TTFT_MS": "5",
    "LLM_LAUNCH_SIM_TPOT_MS": "2",
}


class Deployment:
    """A running server with the runbook endpoint created on it."""

    def __init__(self, server: RunningServer, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60)
        self.name = "deepseek-r1"

    def endpoint(self) -> dict[str, object]:
        response = self.client.get(f"/v1/llm/model-endpoints/{self.name}")
        response.raise_for_status()
        return dict(response.json())

    def processes(self) -> dict[str, int]:
        """name ("rank-0", "rank-1", "forwarder") -> pid, for group 0."""
        (group,) = group_records(self.data_dir, str(self.endpoint()["id"]))
        return {p["name"]: p["pid"] for p in group["processes"]}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp(f"local-{request.param}")
    with _database(request.param, data_dir) as url:
        # Every process the backend starts inherits the marker, so none can hide.
        # Spawned processes get an allow-listed environment: pass the marker on purpose.
        env = {**SERVER_ENV, MARKER: str(data_dir), "LLM_LAUNCH_PASS_ENV": MARKER}
        server = simulated_local_server(data_dir, env, database_url=url).start()
        deployment = Deployment(server, data_dir)
        try:
            response = deployment.client.post("/v1/llm/model-endpoints", json=seed_body())
            assert response.status_code == 200, response.text
            yield deployment
        finally:
            deployment.client.delete(f"/v1/llm/model-endpoints/{deployment.name}")
            server.stop()
            kill_marked(MARKER, data_dir)


def _database(kind: str, data_dir: Path):  # type: ignore[no-untyped-def]
    from contextlib import nullcontext

    if kind == "sqlite":
        return nullcontext(f"sqlite:///{data_dir / 'launch.db'}")
    return fresh_postgres_database()


def test_the_runbook_body_becomes_ready_with_two_ranks_that_rendezvoused(
    deployment: Deployment,
) -> None:
    endpoint = wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    assert "simulated" in endpoint["spec"]["status_reason"]
    assert endpoint["spec"]["deployment_state"]["available_workers"] == 1
    assert endpoint["spec"]["deployment_state"]["unavailable_workers"] == 0

    processes = deployment.processes()
    assert set(processes) == {"rank-0", "rank-1", "forwarder"}
    for rank in (0, 1):
        argv = Path(f"/proc/{processes[f'rank-{rank}']}/cmdline").read_bytes().split(b"\0")
        assert b"llm_launch.simulator" in argv
        assert argv[argv.index(b"--node-rank") + 1] == str(rank).encode()
        assert argv[argv.index(b"--nnodes") + 1] == b"2"
    leader_log = deployment.client.get(
        f"/v1/llm/model-endpoints/{deployment.name}/logs", params={"rank": 0, "tail": 500}
    ).text
    assert "rank 1 joined" in leader_log and "group formed" in leader_log
    worker_log = deployment.client.get(
        f"/v1/llm/model-endpoints/{deployment.name}/logs", params={"rank": 1, "tail": 500}
    ).text
    assert "joined the group" in worker_log


def test_launch_sync_and_stream_routes_answer(deployment: Deployment) -> None:
    wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    body = {"prompt": "What is the capital of France?", "max_new_tokens": 8, "temperature": 0.0}
    params = {"model_endpoint_name": deployment.name}
    sync = deployment.client.post("/v1/llm/completions-sync", params=params, json=body)
    assert sync.status_code == 200, sync.text
    output = sync.json()["output"]
    assert output["text"] and output["num_completion_tokens"] == 8
    assert output["num_prompt_tokens"] > 0

    events = []
    with deployment.client.stream(
        "POST", "/v1/llm/completions-stream", params=params, json=body
    ) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(line)
    assert len(events) >= 8
    last = json.loads(events[-1].removeprefix("data:"))
    assert last["output"]["finished"] is True
    assert last["output"]["num_completion_tokens"] == 8


def test_the_openai_client_chats_and_completes_streaming_and_not(deployment: Deployment) -> None:
    wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    client = openai.OpenAI(base_url=f"{deployment.server.url}/v2", api_key=KEY)
    messages = [{"role": "user", "content": "Say hello"}]
    chat = client.chat.completions.create(model=deployment.name, messages=messages, max_tokens=6)  # type: ignore[arg-type]
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens == 6

    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=deployment.name,
            messages=messages,
            max_tokens=6,
            stream=True,  # type: ignore[arg-type]
        )
        if chunk.choices
    ]
    assert len([p for p in pieces if p]) >= 2
    assert "".join(pieces) == chat.choices[0].message.content  # deterministic

    completion = client.completions.create(model=deployment.name, prompt="Once upon", max_tokens=5)
    assert completion.choices[0].text
    streamed = client.completions.create(
        model=deployment.name, prompt="Once upon", max_tokens=5, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text


def test_errors_unknown_endpoint_404_and_wrong_model_field(deployment: Deployment) -> None:
    params = {"model_endpoint_name": "no-such-endpoint"}
    body = {"prompt": "x", "max_new_tokens": 1, "temperature": 0.0}
    assert (
        deployment.client.post("/v1/llm/completions-sync", params=params, json=body).status_code
        == 404
    )
    wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    params = {"model_endpoint_name": deployment.name}
    missing = deployment.client.post(
        "/v1/llm/completions-sync", params=params, json={"prompt": "x"}
    )
    assert missing.status_code == 422
    assert "max_new_tokens" in {e["field"] for e in missing.json()["errors"]}
    hot = deployment.client.post(
        "/v1/llm/completions-sync", params=params,
        json={"prompt": "x", "max_new_tokens": 1, "temperature": 9.0},
    )  # fmt: skip
    assert hot.status_code == 422 and "temperature" in hot.text
    response = deployment.client.post("/v2/chat/completions", json={"messages": []})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "model"


def test_killing_the_worker_leaves_ready_restarts_the_group_and_becomes_ready_again(
    deployment: Deployment,
) -> None:
    wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    before = deployment.processes()
    os.kill(before["rank-1"], signal.SIGKILL)

    left = wait_for(
        deployment.client, deployment.name, lambda e: e["status"] != "READY", timeout=30
    )
    assert "rank 1" in left["spec"]["status_reason"]
    assert "worker rank 1 killed by SIGKILL; group recreated" in left["spec"]["status_reason"]
    again = wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    assert again["spec"]["status_reason"].startswith("ready; simulated engine")  # cause over
    (group,) = again["spec"]["groups"]  # the history is in the group's detail
    assert group["restarts"] == 1
    cause = group["last_cause"]
    assert (cause["kind"], cause["process"], cause["signal"]) == ("exited", "rank-1", "SIGKILL")
    after = deployment.processes()
    assert set(after.values()).isdisjoint(before.values())  # the whole group was recreated


def test_deleting_the_endpoint_leaves_no_process(deployment: Deployment) -> None:
    wait_for(deployment.client, deployment.name, lambda e: e["status"] == "READY")
    pids = deployment.processes()
    marker = str(deployment.data_dir)
    assert len(processes_with_env(MARKER, marker)) >= 4  # server, two ranks, forwarder
    response = deployment.client.delete(f"/v1/llm/model-endpoints/{deployment.name}")
    assert response.json() == {"deleted": True}
    assert deployment.client.get(f"/v1/llm/model-endpoints/{deployment.name}").status_code == 404
    wait_until_deleted(deployment.client, deployment.name)  # the teardown ends in the background
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    server_pid = deployment.server.pid
    assert [p for p in processes_with_env(MARKER, marker) if p != server_pid] == []
