"""A client that leaves a non-streamed generation ends it, as SGLang and vLLM abort a
request whose connection closed: the simulated engine must not keep generating for
nobody (the forwarder's and the API's cancellation would otherwise be untestable)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llm_launch.simulator.app import build_app
from llm_launch.simulator.args import parse_args
from tests.unit.simulator.fakes import FakeGroup

SLOW = ["--sim-ttft-ms", "0", "--sim-tpot-ms", "1000"]  # 500 tokens: minutes of work
ROUTES = [
    ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 500}}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 500}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}),
]


async def running_requests(app: Any) -> float:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": [],
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    await app(scope, receive, send)
    text = b"".join(m.get("body", b"") for m in sent).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("sglang:num_running_reqs{")]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0  # none before a request


@pytest.mark.parametrize("path, body", ROUTES, ids=[p for p, _ in ROUTES])
async def test_a_client_that_leaves_ends_its_generation(path: str, body: dict[str, Any]) -> None:
    app = build_app(parse_args(["--model-path", "/models/x", *SLOW]), FakeGroup())
    left = asyncio.Event()
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "http_version": "1.1",
             "scheme": "http"}  # fmt: skip
    call = asyncio.create_task(app(scope, receive, send))
    for _ in range(3000):  # poll the engine's own gauge until the generation runs
        if await running_requests(app) == 1:
            break
        await asyncio.sleep(0.01)
    assert await running_requests(app) == 1
    left.set()
    # A deadline, not a timing claim: the generation itself would run for minutes.
    await asyncio.wait_for(call, timeout=30)
    assert await running_requests(app) == 0
