"""A client that walks away cancels its request at every hop: API route -> forwarder ->
engine, streamed or not, and the forwarder's slot is free again.

Engines here never finish a generation (`tests.support.slow_engine` holds each until its
client leaves; the simulator runs with a time per token of minutes), so a request still
running upstream can only be one nobody cancelled. Nothing is timed: each check polls
until a condition holds, with a generous deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import endpoint_body
from tests.support.data_plane import (
    Process,
    engine_state,
    eventually,
    in_flight,
    open_request,
    start_forwarder,
    start_slow_engine,
    status_of,
)
from tests.support.local_groups import forwarder_url, kill_marked, wait_for
from tests.support.server import RunningServer, simulated_local_server

TOKEN = "abandoned-requests-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LAUNCH = {"prompt": "Hello", "max_new_tokens": 8, "temperature": 0.0}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
COMPLETION = {"model": "m", "prompt": "Hello", "max_tokens": 8}
FORWARDER_ROUTES = [
    ("/predict", LAUNCH),
    ("/stream", LAUNCH),
    ("/v1/completions", COMPLETION),
    ("/v1/completions", {**COMPLETION, "stream": True}),
    ("/v1/chat/completions", CHAT),
    ("/v1/chat/completions", {**CHAT, "stream": True}),
]
N = 4  # requests abandoned per route


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("abandoned")


@pytest.fixture(scope="module")
def engine(logs: Path) -> Iterator[Process]:
    process = start_slow_engine(logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def forwarder(engine: Process, logs: Path) -> Iterator[Process]:
    process = start_forwarder(
        engine.url, logs, "--ready-check-path", "/health_generate", "--max-concurrency",
        str(N), token=TOKEN,
    )  # fmt: skip
    yield process
    process.stop()


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize(("path", "body"), FORWARDER_ROUTES)
def test_a_client_leaving_the_forwarder_cancels_the_engine_request_and_frees_its_slot(
    forwarder: Process, engine: Process, path: str, body: dict[str, Any]
) -> None:
    cancelled_before = engine_state(engine)["cancelled"]
    held = [open_request(forwarder.port, path, body, AUTH) for _ in range(N)]
    try:
        eventually(lambda: engine_state(engine)["open"] == N, f"{N} requests at the engine")
        refused = open_request(forwarder.port, path, body, AUTH)
        assert status_of(refused) == 429  # every slot is taken
        refused.close()
    finally:
        close_all(held)
    eventually(lambda: engine_state(engine)["open"] == 0, "the engine's requests cancelled")
    assert engine_state(engine)["cancelled"] == cancelled_before + N
    eventually(lambda: in_flight(forwarder.url) == 0, "the forwarder's slots freed")
    # A slot is free again: the next request reaches the engine instead of a 429.
    again = open_request(forwarder.port, path, body, AUTH)
    try:
        eventually(lambda: engine_state(engine)["open"] == 1, "a new request admitted")
    finally:
        again.close()
    eventually(lambda: engine_state(engine)["open"] == 0, "the last request cancelled")


# --- through the API -----------------------------------------------------------------

KEY = "abandoned-key-0123456789ab"
SERVER_ENV = {
    "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
    "LLM_LAUNCH_SIM_TTFT_MS": "5",
    # A generation of more than one token takes hours: only a cancel ends it.
    "LLM_LAUNCH_SIM_TPOT_MS": "36000000",
}
MARKER = "LLM_LAUNCH_TEST_MARKER"


class Deployment:
    def __init__(self, server: RunningServer, forwarder_url: str) -> None:
        self.server = server
        self.port = server.port
        self.forwarder_url = forwarder_url


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("abandoned-api")
    server = simulated_local_server(
        data_dir, {**SERVER_ENV, MARKER: str(data_dir), "LLM_LAUNCH_PASS_ENV": MARKER}
    ).start()
    client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60)
    try:
        body = endpoint_body(name="slow", inference_framework="sglang", min_workers=1)
        client.post("/v1/llm/model-endpoints", json=body).raise_for_status()
        endpoint = wait_for(client, "slow", lambda e: e["status"] == "READY")
        url = forwarder_url(data_dir, str(endpoint["id"]))
        assert url is not None
        yield Deployment(server, url)
    finally:
        client.delete("/v1/llm/model-endpoints/slow")
        client.close()
        server.stop()
        kill_marked(MARKER, data_dir)


API_ROUTES = [
    ("/v1/llm/completions-sync?model_endpoint_name=slow", LAUNCH),
    ("/v1/llm/completions-stream?model_endpoint_name=slow", LAUNCH),
    ("/v2/completions", {**COMPLETION, "model": "slow"}),
    ("/v2/chat/completions", {**CHAT, "model": "slow"}),
    ("/v2/chat/completions", {**CHAT, "model": "slow", "stream": True}),
]


@pytest.mark.parametrize(("path", "body"), API_ROUTES)
def test_a_client_leaving_the_api_cancels_the_request_at_the_forwarder(
    deployment: Deployment, path: str, body: dict[str, Any]
) -> None:
    eventually(lambda: in_flight(deployment.forwarder_url) == 0, "an idle forwarder")
    held = [open_request(deployment.port, path, body, {"x-api-key": KEY}) for _ in range(N)]
    try:
        eventually(
            lambda: in_flight(deployment.forwarder_url) == N, f"{N} requests at the forwarder"
        )
    finally:
        close_all(held)
    eventually(
        lambda: in_flight(deployment.forwarder_url) == 0,
        "the abandoned requests cancelled at the forwarder",
    )
