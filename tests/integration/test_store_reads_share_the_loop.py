"""The reconciler's and routing table's reads of every endpoint (EndpointRepository.list_all,
list_routes) let the event loop's other tasks run every few rows: `serve` answers inference
on the same loop, and at 10,000 endpoints one read held it for 110-860 ms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.store import repository as repository_module
from llm_launch.store.repository import EndpointRepository
from tests.builders import endpoint_body

COUNT = 30
PARTITION, FULL_PARTITION = 5, 3


class Journal:
    """Rows decoded ("d") or compared ("c") and another task's turns ("|"), in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries: list[str] = []
        decode, compare = repository_module.to_endpoint, repository_module.same_state

        def decoded(row: Any) -> Endpoint:
            self.entries.append("d")
            return decode(row)

        def compared(endpoint: Endpoint, state: Any) -> bool:
            self.entries.append("c")
            return compare(endpoint, state)

        monkeypatch.setattr(repository_module, "to_endpoint", decoded)
        monkeypatch.setattr(repository_module, "same_state", compared)

    async def longest_run(self, read: Callable[[], Awaitable[object]], kind: str) -> int:
        """The most rows `read` decoded or compared (`kind`) between two other turns."""

        async def tick() -> None:
            while True:
                self.entries.append("|")
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        self.entries.clear()
        await read()
        ticker.cancel()
        assert kind in self.entries
        return max(run.count(kind) for run in "".join(self.entries).split("|"))


@pytest.fixture
async def many(store: EndpointRepository, monkeypatch: pytest.MonkeyPatch) -> EndpointRepository:
    catalog = load_hardware_catalog()
    for i in range(COUNT):
        await store.create(f"owner{i % 3}", build_spec(endpoint_body(name=f"e-{i}"), catalog))
    monkeypatch.setattr(repository_module, "PARTITION", PARTITION, raising=False)
    monkeypatch.setattr(repository_module, "FULL_PARTITION", FULL_PARTITION, raising=False)
    return store


async def test_a_first_read_decodes_a_few_endpoints_between_two_turns(
    many: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(monkeypatch)
    assert await journal.longest_run(lambda: many.list_all(), "d") <= FULL_PARTITION
    assert await journal.longest_run(lambda: many.list_routes({}), "d") <= FULL_PARTITION


async def test_a_read_of_known_endpoints_compares_a_few_rows_between_two_turns(
    many: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {endpoint.id: endpoint for endpoint in await many.list_all()}
    journal = Journal(monkeypatch)
    assert await journal.longest_run(lambda: many.list_all(known), "c") <= PARTITION
    assert len(await many.list_all(known)) == COUNT
