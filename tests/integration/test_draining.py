"""Draining (issue 9 item 8): a group that leaves finishes what it serves first.

The forwarder (in process): `POST /drain` is taken from loopback with the token only; a
draining forwarder refuses new requests, fails readiness and says when it has drained.
The preStop command (`llm-launch-forwarder drain`) against a real forwarder process.
The local backend (real simulated groups, a slow token rate so a stream is in flight):
a scale-down and a delete during a stream lose no request; the stream ends with [DONE].
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_launch.backends.local.backend import LocalBackend
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.runtime.forwarder.app import ForwarderConfig, create_app
from tests.builders import endpoint_body

TOKEN = "drain-test-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
COMPLETION = {"model": "m", "prompt": "hi", "max_tokens": 1}


# --- the forwarder, in process ------------------------------------------------------------


def engine(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/health_generate":
        return httpx.Response(200, json={"status": "ok"})
    return httpx.Response(200, json={"choices": [{"text": "x"}]})


def forwarder(client_host: str = "127.0.0.1") -> httpx.AsyncClient:
    config = ForwarderConfig(
        engine_url="http://engine:5005", ready_check_path="/health_generate", token=TOKEN
    )
    app = create_app(config, httpx.MockTransport(engine))
    transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://forwarder")


async def test_a_draining_forwarder_refuses_new_requests_fails_readiness_and_says_drained() -> None:
    async with forwarder() as client:
        assert (
            await client.post("/v1/completions", json=COMPLETION, headers=AUTH)
        ).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/drained")).status_code == 503  # not draining yet
        drained = await client.post("/drain", headers=AUTH)
        assert drained.status_code == 200 and drained.json()["draining"] is True
        refused = await client.post("/v1/completions", json=COMPLETION, headers=AUTH)
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "draining"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "draining" in ready.json()["reason"]
        assert (await client.get("/drained")).json() == {
            "drained": True, "draining": True, "in_flight": 0,
        }  # fmt: skip
        # Liveness is the engine's generation check alone: draining never restarts a group.
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200


async def test_nobody_on_the_pod_network_can_drain_a_group_even_with_the_token() -> None:
    async with forwarder(client_host="10.1.2.3") as client:
        refused = await client.post("/drain", headers=AUTH)
        assert refused.status_code == 403
        assert (await client.get("/readyz")).status_code == 200


async def test_drain_needs_the_forwarders_token_from_loopback_too() -> None:
    async with forwarder() as client:
        assert (await client.post("/drain")).status_code == 401
        wrong = {"authorization": "Bearer not-the-token"}
        assert (await client.post("/drain", headers=wrong)).status_code == 401
        assert (await client.get("/readyz")).status_code == 200


async def test_a_dual_stack_listener_sees_ipv4_loopback_as_mapped_and_takes_it() -> None:
    async with forwarder(client_host="::ffff:127.0.0.1") as client:
        assert (await client.post("/drain", headers=AUTH)).status_code == 200


def test_the_drain_command_says_so_when_no_forwarder_runs() -> None:
    command = [sys.executable, "-m", "llm_launch.runtime.forwarder", "drain",
               "--url", "http://127.0.0.1:9", "--grace-s", "5"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "is not running: nothing to drain" in result.stdout


# --- the local backend, with real simulated groups ------------------------------------------

TPOT_ENV = "LLM_LAUNCH_SIM_TPOT_MS"
# At 200 ms a token, a stream of about 14 s: longer than the 10 s a stopped process gets
# between SIGTERM and SIGKILL, so only a drain lets it finish.
TPOT_MS = "200"
STREAM_TOKENS = 70


def an_endpoint(generation: int = 1, **overrides: Any) -> Endpoint:
    now = datetime.now(UTC)
    body = endpoint_body(**{"inference_framework": "sglang", "name": "drain-me", **overrides})
    spec = build_spec(body, load_hardware_catalog())
    return Endpoint(
        "end_drain0001", "alice", spec, EndpointStatus.UPDATE_PENDING, None, generation,
        now, now, forwarder_token=TOKEN,
    )  # fmt: skip


@pytest.fixture
async def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalBackend]:
    monkeypatch.setenv(TPOT_ENV, TPOT_MS)  # reaches the simulated engines through --pass-env
    backend = LocalBackend(
        tmp_path, "simulated", PortAllocator(first=43100, last=43199), pass_env=(TPOT_ENV,),
        drain_grace_s=60,
    )  # fmt: skip
    try:
        yield backend
    finally:
        await backend.teardown(an_endpoint())
        await backend.close()


async def wait_until(check: Any, what: str, deadline_s: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + deadline_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def ready_groups(backend: LocalBackend, endpoint: Endpoint, count: int) -> list[str]:
    async def ready() -> bool:
        observed = await backend.observe(endpoint)
        return observed.status is EndpointStatus.READY and len(backend.targets(endpoint)) == count

    await wait_until(ready, f"{count} ready groups")
    return backend.targets(endpoint)


async def stream(url: str, started: asyncio.Event) -> list[str]:
    """A streamed completion through a group's forwarder: its SSE data lines."""
    body = {"model": "drain-me", "prompt": "tell me", "stream": True,  # served as its name
            "max_tokens": STREAM_TOKENS, "ignore_eos": True}  # fmt: skip
    lines = []
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("POST", f"{url}/v1/completions", json=body, headers=AUTH) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))
                started.set()
    return lines


def tokens_of(lines: list[str]) -> int:
    return sum(1 for line in lines if line != "[DONE]" and json.loads(line)["choices"])


async def test_a_scale_down_during_a_stream_lets_the_stream_finish_with_done(
    local: LocalBackend,
) -> None:
    endpoint = an_endpoint(min_workers=2, max_workers=3)
    await local.apply(endpoint)
    targets = await ready_groups(local, endpoint, 2)
    leaving = local._runtimes[endpoint.id].groups[1]
    pids = [p.pid for p in leaving.processes]
    started = asyncio.Event()
    streaming = asyncio.create_task(stream(leaving.forwarder_url, started))
    await asyncio.wait_for(started.wait(), 30)
    await local.apply(an_endpoint(generation=2, min_workers=1, max_workers=3))

    async def draining() -> bool:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{leaving.forwarder_url}/drained")
        return answer.json()["draining"] is True

    await wait_until(draining, "the leaving group's forwarder to drain")
    assert leaving.forwarder_url not in local.targets(endpoint)  # out of routing at once
    lines = await streaming
    assert lines[-1] == "[DONE]"
    assert tokens_of(lines) == STREAM_TOKENS
    await ready_groups(local, endpoint, 1)

    async def stopped() -> bool:
        return all(_gone(pid) for pid in pids)

    await wait_until(stopped, "the drained group's processes to stop")
    assert targets[0] in local.targets(endpoint)  # the group that stays kept serving


async def test_a_delete_during_a_stream_lets_the_stream_finish_before_the_group_stops(
    local: LocalBackend,
) -> None:
    endpoint = an_endpoint(min_workers=1, max_workers=1)
    await local.apply(endpoint)
    (url,) = await ready_groups(local, endpoint, 1)
    started = asyncio.Event()
    streaming = asyncio.create_task(stream(url, started))
    await asyncio.wait_for(started.wait(), 30)
    await local.teardown(endpoint)  # returns once drained and stopped
    lines = await streaming
    assert lines[-1] == "[DONE]" and tokens_of(lines) == STREAM_TOKENS


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
