"""How the inference router spreads requests over an endpoint's ready groups: the least
busy group wins, and groups that tie share the traffic."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.inference import InferenceRouter
from llm_launch.services.routing_table import RoutingTable
from tests.builders import endpoint_body

GROUPS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]


def an_endpoint() -> Endpoint:
    now = datetime.now(UTC)
    spec = build_spec(endpoint_body(min_workers=2), load_hardware_catalog())
    return Endpoint("end_route0001", "alice", spec, EndpointStatus.READY, "ready", 1, now, now)


def a_router() -> InferenceRouter:
    return InferenceRouter(RoutingTable(None), backend=None)


def test_sequential_picks_over_two_idle_groups_reach_both_in_fair_shares() -> None:
    router, endpoint = a_router(), an_endpoint()
    picks = Counter(router.pick_target(endpoint, among=GROUPS) for _ in range(200))
    # A fair draw gives each about 100 (60 is more than five standard deviations below);
    # a picker that breaks ties by order gives 200 and 0.
    assert set(picks) == set(GROUPS)
    assert min(picks.values()) >= 60, picks


def test_a_group_with_a_request_in_flight_is_never_picked_over_an_idle_one() -> None:
    router, endpoint = a_router(), an_endpoint()

    async def picks_beside_a_busy_group() -> tuple[str, Counter[str]]:
        async with held_request(router, endpoint) as busy:
            idle = GROUPS[1]
            return idle, Counter(
                router.pick_target(endpoint, among=[busy, idle]) for _ in range(50)
            )

    idle, picks = asyncio.run(picks_beside_a_busy_group())
    assert picks == Counter({idle: 50})


@asynccontextmanager
async def held_request(router: InferenceRouter, endpoint: Endpoint) -> AsyncIterator[str]:
    """A request sent through the router to a server that never answers, kept in flight
    until the block ends (then cancelled, as a client that leaves); yields the server's URL."""
    received = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read(1)
        received.set()
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    target = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    request = asyncio.create_task(router.post(endpoint, target, "/v1/completions", b"{}"))
    try:
        await asyncio.wait_for(received.wait(), 30)
        yield target
    finally:
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        server.close()
        await router.close()
