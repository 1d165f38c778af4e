"""A cache-aware endpoint's requests, sent through the inference router: each conversation
stays on the group that served its first turn; a least-in-flight endpoint spreads them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.inference import InferenceRouter
from tests.builders import endpoint_body

SYSTEM = "You are a travel agent for {}. Answer with the best routes and fares you know. " * 4


def an_endpoint(policy: str) -> Endpoint:
    now = datetime.now(UTC)
    spec = build_spec(endpoint_body(min_workers=2, routing_policy=policy), load_hardware_catalog())
    return Endpoint("end_cache0001", "alice", spec, EndpointStatus.READY, "ready", 1, now, now)


class Groups:
    """Targets the fake backend offers: HTTP servers answering `{}`, recording each body."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.received: list[tuple[str, bytes]] = []

    def targets(self, _: Endpoint) -> list[str]:
        return list(self.urls)


@asynccontextmanager
async def two_groups() -> AsyncIterator[Groups]:
    groups = Groups()

    def serve(url_box: list[str]) -> Any:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.CancelledError):
                await respond(reader, writer)

        async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                groups.received.append((url_box[0], await reader.readexactly(length)))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()

        return answer

    servers = []
    for _ in range(2):
        box: list[str] = []
        server = await asyncio.start_server(serve(box), "127.0.0.1", 0)
        box.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        groups.urls.append(box[0])
        servers.append(server)
    try:
        yield groups
    finally:
        for server in servers:
            server.close()


def chat(topic: str, turns: int) -> bytes:
    # Each conversation its own system prompt: with one shared, sglang-router's policy (and
    # ours) sends both to the group holding it while the load stays balanced.
    messages = [{"role": "system", "content": SYSTEM.replace("{}", topic)}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"About {topic}, question {turn}?"})
        messages.append({"role": "assistant", "content": f"An answer on {topic} {turn}."})
    return orjson.dumps({"model": "m", "messages": messages})


async def route_conversations(policy: str) -> dict[str, Counter[str]]:
    """Two conversations of six turns each, interleaved; where each turn went."""
    endpoint = an_endpoint(policy)
    async with two_groups() as groups:
        router = InferenceRouter(None, groups)  # type: ignore[arg-type]
        try:
            for turns in range(1, 7):
                for topic in ("Lima", "Oslo"):
                    reply = await router.send(endpoint, "/v1/chat/completions", chat(topic, turns))
                    assert (reply.status_code, await reply.read()) == (200, b"{}")
        finally:
            await router.close()
    went: dict[str, Counter[str]] = {"Lima": Counter(), "Oslo": Counter()}
    for url, body in groups.received:
        topic = "Lima" if b"Lima" in body else "Oslo"
        went[topic][url] += 1
    return went


def test_each_conversation_of_a_cache_aware_endpoint_stays_on_one_group() -> None:
    went = asyncio.run(route_conversations("cache_aware"))
    assert [len(went["Lima"]), len(went["Oslo"])] == [1, 1], went
    assert set(went["Lima"]) != set(went["Oslo"]), went  # the second one took the empty group


def test_a_least_in_flight_endpoint_spreads_a_conversation_over_the_groups() -> None:
    # Sequential requests tie at zero in flight: each is drawn at random, so twelve turns
    # all landing on one group per conversation would be a 1 in 1024 chance for both.
    spread = [asyncio.run(route_conversations("least_in_flight")) for _ in range(2)]
    assert any(len(went[topic]) == 2 for went in spread for topic in went), spread
