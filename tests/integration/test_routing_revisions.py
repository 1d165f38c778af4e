"""The routing table's change counter (store/revisions.py), on SQLite and PostgreSQL: an idle
refresh reads no endpoint row, each write another process makes reaches the table in one
refresh that reads only what changed, a reader behind the pruned removals reads everything,
and on PostgreSQL writers committing out of order never leave a reader missing a change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import NotFound
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store import revisions
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository
from llm_launch.store.tables import EndpointRow
from tests.builders import endpoint_body
from tests.support.databases import fresh_postgres_database

OWNER = "alice"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@dataclass
class Replicas:
    """A reader (this process's table) and a writer with its own engine on the same
    database: another process's repository, as far as the table can tell."""

    reader_engine: AsyncEngine
    writer_engine: AsyncEngine
    statements: list[str] = field(default_factory=list)  # the reader's, as sent

    @property
    def reader(self) -> EndpointRepository:
        return EndpointRepository(self.reader_engine)

    def writer(self, **options: Any) -> EndpointRepository:
        return EndpointRepository(self.writer_engine, **options)

    def sent(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    def endpoint_reads(self) -> list[str]:
        return [s for s in self.statements if "endpoints" in s and "endpoint_removals" not in s]


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[Replicas]:
    async with two_engines(database_url) as pair:
        yield pair


@asynccontextmanager
async def two_engines(url: str) -> AsyncIterator[Replicas]:
    pair = Replicas(open_database(url), open_database(url))
    event.listen(pair.reader_engine.sync_engine, "before_cursor_execute", pair.sent)
    try:
        yield pair
    finally:
        await pair.reader_engine.dispose()
        await pair.writer_engine.dispose()


async def created(repository: EndpointRepository, name: str) -> Endpoint:
    spec = build_spec(endpoint_body(name=name), load_hardware_catalog())
    endpoint, _ = await repository.create(OWNER, spec)
    return endpoint


def gone(table: RoutingTable, name: str) -> bool:
    try:
        table.lookup(OWNER, name)
    except NotFound:
        return True
    return False


async def test_an_idle_refresh_reads_the_change_counter_and_no_endpoint_row(
    replicas: Replicas,
) -> None:
    writer = replicas.writer()
    for name in ("chat", "code", "embed"):
        await created(writer, name)
    table = RoutingTable(replicas.reader, stored_targets=True)
    await table.refresh()
    assert replicas.endpoint_reads()  # the first refresh reads every row

    replicas.statements.clear()
    await table.refresh()
    await table.refresh()

    assert replicas.endpoint_reads() == []
    assert len(replicas.statements) == 2  # one counter read per refresh
    assert len(table) == 3


async def test_each_write_of_another_process_reaches_the_table_in_one_refresh_of_the_changes(
    replicas: Replicas,
) -> None:
    writer = replicas.writer()
    await created(writer, "stays")
    table = RoutingTable(replicas.reader, stored_targets=True)
    await table.refresh()

    chat = await created(writer, "chat")
    await table.refresh()
    assert table.lookup(OWNER, "chat").id == chat.id

    bigger = build_spec(endpoint_body(name="chat", max_workers=5), load_hardware_catalog())
    chat, _ = await writer.update_spec(chat, bigger)
    await table.refresh()
    assert table.lookup(OWNER, "chat").generation == 2
    assert table.lookup(OWNER, "chat").spec == bigger

    await writer.set_status(chat.id, EndpointStatus.UPDATE_FAILED, "engine crashed")
    await table.refresh()
    failed = table.lookup(OWNER, "chat")
    assert (failed.status, failed.status_reason) == (EndpointStatus.UPDATE_FAILED, "engine crashed")

    await writer.set_targets(chat.id, '["http://127.0.0.1:20001"]')
    await table.refresh()
    assert table.targets(table.lookup(OWNER, "chat")) == ["http://127.0.0.1:20001"]

    await writer.mark_deleting(chat)
    replicas.statements.clear()
    await table.refresh()
    assert gone(table, "chat")

    assert not gone(table, "stays")
    assert table.full_reads == 1  # every refresh after the first read only the changes
    changed_rows = [s for s in replicas.endpoint_reads() if "revision >" in s]
    assert changed_rows, replicas.statements  # ... by revision, not a read of every row


async def test_a_delete_begun_and_finished_between_two_refreshes_is_seen(
    replicas: Replicas,
) -> None:
    writer = replicas.writer()
    chat = await created(writer, "chat")
    await created(writer, "stays")
    table = RoutingTable(replicas.reader)
    await table.refresh()

    operation = await writer.mark_deleting(chat)
    await writer.remove(chat.id, operation)  # the row is gone: only the removal tells
    await table.refresh()

    assert gone(table, "chat")
    assert not gone(table, "stays")
    assert table.full_reads == 1


async def test_a_reader_behind_the_pruned_removals_reads_everything_and_drops_the_deleted(
    replicas: Replicas,
) -> None:
    writer = replicas.writer(removals_kept=1)  # each removal prunes the ones before it
    first, second = await created(writer, "first"), await created(writer, "second")
    await created(writer, "stays")
    table = RoutingTable(replicas.reader)
    await table.refresh()

    for endpoint in (first, second):  # the second removal prunes the first's record
        await writer.remove(endpoint.id, await writer.mark_deleting(endpoint))
    late = await created(writer, "late")
    await table.refresh()

    assert gone(table, "first") and gone(table, "second")
    assert table.lookup(OWNER, "late").id == late.id
    assert table.full_reads == 2  # the first refresh, and this one


async def test_a_refresh_that_fails_midway_keeps_the_table_and_the_next_one_catches_up(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = replicas.writer()
    chat = await created(writer, "chat")
    reader = replicas.reader
    table = RoutingTable(reader)
    await table.refresh()
    await writer.set_status(chat.id, EndpointStatus.UPDATE_FAILED, "engine crashed")
    read_routes = reader.list_routes

    async def database_gone(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, ConnectionError("connection refused"))

    monkeypatch.setattr(reader, "list_routes", database_gone)  # after the counter's read
    with pytest.raises(OperationalError):
        await table.refresh()
    assert table.lookup(OWNER, "chat").status is EndpointStatus.UPDATE_PENDING  # as it was

    monkeypatch.setattr(reader, "list_routes", read_routes)
    await table.refresh()
    assert table.lookup(OWNER, "chat").status is EndpointStatus.UPDATE_FAILED
    assert table.full_reads == 1


async def test_a_periodic_full_read_happens_even_when_nothing_changed(
    replicas: Replicas,
) -> None:
    await created(replicas.writer(), "chat")
    table = RoutingTable(replicas.reader, full_every=3)
    for _ in range(7):
        await table.refresh()
    assert table.full_reads == 3  # refreshes 1, 4 and 7


async def test_writers_committing_out_of_order_never_leave_a_reader_missing_a_change(
    postgres_url: str,
) -> None:
    async with two_engines(postgres_url) as pair:
        writer = pair.writer()
        first, second = await created(writer, "first"), await created(writer, "second")
        table = RoutingTable(pair.reader)
        await table.refresh()

        sessions = async_sessionmaker(pair.writer_engine)
        async with sessions.begin() as held:  # A: written, counter taken, not committed
            await held.execute(
                update(EndpointRow).where(EndpointRow.id == first.id).values(status_reason="A")
            )
            a_revision = await revisions.stamp(held, first.id)
            b_write = asyncio.create_task(writer.set_status(second.id, EndpointStatus.READY, "B"))
            await _waiting_on_a_lock(pair.reader_engine, b_write)
            assert not b_write.done()  # B waits for A's commit
            await table.refresh()  # neither is committed: the reader must not move past A
        assert await b_write
        async with sessions() as session:
            b_revision = await session.scalar(
                select(EndpointRow.revision).where(EndpointRow.id == second.id)
            )
        assert b_revision is not None and b_revision > a_revision

        await table.refresh()

        assert table.lookup(OWNER, "first").status_reason == "A"
        assert table.lookup(OWNER, "second").status_reason == "B"


async def _waiting_on_a_lock(engine: AsyncEngine, task: asyncio.Task[Any]) -> None:
    """Until another connection of this database waits on a lock (or `task` is done)."""
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while not task.done() and time.monotonic() < deadline:
        async with engine.connect() as connection:
            if await connection.scalar(query):
                return
        await asyncio.sleep(0.01)
