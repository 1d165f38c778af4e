"""Concurrent creates of one name: exactly one wins, the rest get 409, one row exists."""

from __future__ import annotations

import asyncio

import httpx

from tests.builders import endpoint_body
from tests.conftest import ALICE_KEY
from tests.support.server import RunningServer

CONCURRENT_REQUESTS = 16


async def _create_many(url: str, body: dict[str, object]) -> list[int]:
    async with httpx.AsyncClient(
        base_url=url, headers={"x-api-key": ALICE_KEY}, timeout=60
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/llm/model-endpoints", json=body) for _ in range(CONCURRENT_REQUESTS))
        )
    return [r.status_code for r in responses]


def test_exactly_one_of_many_concurrent_duplicate_creates_wins(
    server: RunningServer, alice: httpx.Client
) -> None:
    body = endpoint_body()
    codes = asyncio.run(_create_many(server.url, body))
    assert sorted(codes) == [200] + [409] * (CONCURRENT_REQUESTS - 1)
    listed = alice.get("/v1/llm/model-endpoints", params={"name": body["name"]}).json()
    assert len(listed["model_endpoints"]) == 1
