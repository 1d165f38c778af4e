"""The in-memory routing table: lookups by owner and name, and a refresh that never brings
back an older state than a write made in this process while it read."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import NotFound
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import RoutingTable
from tests.builders import endpoint_body


def an_endpoint(
    endpoint_id: str = "end_table0001", owner: str = "alice", name: str = "chat"
) -> Endpoint:
    now = datetime.now(UTC)
    spec = build_spec(endpoint_body(name=name), load_hardware_catalog())
    return Endpoint(endpoint_id, owner, spec, EndpointStatus.READY, "ready", 1, now, now)


class SlowStore:
    """A repository whose `list_routes` answers a snapshot once the test lets it: every
    row, whether the table reads all (`since` None) or what changed since a revision."""

    def __init__(self, rows: list[Endpoint]) -> None:
        self.rows = rows
        self.revision = 1  # the change counter
        self.reads: list[int | None] = []  # each read's `since`
        self.reading = asyncio.Event()
        self.answer = asyncio.Event()

    async def routing_revision(self) -> int:
        return self.revision

    async def removed_since(self, since: int) -> list[str] | None:
        return []

    async def list_routes(
        self, known: Mapping[str, Endpoint], since: int | None = None
    ) -> list[tuple[Endpoint, str | None]]:
        self.reads.append(since)
        snapshot: list[tuple[Endpoint, str | None]] = [(e, None) for e in self.rows]
        self.reading.set()
        await self.answer.wait()
        return snapshot


def table_over(store: SlowStore) -> RoutingTable:
    return RoutingTable(store)  # type: ignore[arg-type]


def test_another_owners_endpoint_and_a_deleting_one_are_not_found() -> None:
    table = RoutingTable(None)
    table.put(an_endpoint())
    table.put(dataclasses.replace(an_endpoint("end_table0002", name="gone"),
                                  status=EndpointStatus.DELETE_IN_PROGRESS))  # fmt: skip
    assert table.lookup("alice", "chat").id == "end_table0001"
    with pytest.raises(NotFound, match="no endpoint named 'chat'"):
        table.lookup("bob", "chat")
    with pytest.raises(NotFound):
        table.lookup("alice", "gone")


async def test_a_refresh_drops_what_the_database_deleted_and_adds_what_it_created() -> None:
    store = SlowStore([an_endpoint("end_new000001", owner="bob", name="fresh")])
    table = table_over(store)
    table.put(an_endpoint())
    store.answer.set()
    await table.refresh()
    assert table.lookup("bob", "fresh").id == "end_new000001"
    with pytest.raises(NotFound):
        table.lookup("alice", "chat")


async def test_a_delete_made_here_during_a_refresh_is_not_undone_by_its_older_snapshot() -> None:
    chat = an_endpoint()
    store = SlowStore([chat])
    table = table_over(store)
    table.put(chat)
    refreshing = asyncio.create_task(table.refresh())
    await store.reading.wait()  # the snapshot, with the endpoint in it, is taken
    table.remove(chat.id)
    store.answer.set()
    await refreshing
    with pytest.raises(NotFound):
        table.lookup("alice", "chat")


async def test_a_delete_made_here_during_a_refresh_of_changes_is_not_undone_by_it() -> None:
    chat = an_endpoint()
    store = SlowStore([chat])
    table = table_over(store)
    store.answer.set()
    await table.refresh()  # the first: a full read
    store.revision, store.reading, store.answer = 2, asyncio.Event(), asyncio.Event()
    refreshing = asyncio.create_task(table.refresh())
    await store.reading.wait()  # the changes, with the endpoint in them, are read
    table.remove(chat.id)
    store.answer.set()
    await refreshing
    assert store.reads == [None, 1]  # the second read only what changed after revision 1
    with pytest.raises(NotFound):
        table.lookup("alice", "chat")


async def test_a_status_observed_for_an_older_generation_is_ignored() -> None:
    table = RoutingTable(None)
    table.put(dataclasses.replace(an_endpoint(), generation=2))
    table.observed("end_table0001", 1, EndpointStatus.UPDATE_FAILED, "old spec failed", 0, 1)
    assert table.lookup("alice", "chat").status is EndpointStatus.READY
    table.observed("end_table0001", 2, EndpointStatus.UPDATE_FAILED, "engine crashed", 0, 1)
    failed = table.lookup("alice", "chat")
    assert (failed.status, failed.status_reason) == (EndpointStatus.UPDATE_FAILED, "engine crashed")
