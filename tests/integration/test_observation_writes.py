"""A reconciler's observations written many to a transaction (store/observations.py,
services/observation_writer.py), on SQLite and PostgreSQL: a pass commits its endpoints'
statuses in a few transactions, each write keeps `set_status`'s and `set_targets`'
conditions, one routing revision stamps the rows a batch wrote, and a failed batch fails
only its writes, which the next pass makes again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import select

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.observation_writer import ObservationWriter
from llm_launch.services.reconciler import Reconciler
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.database import open_database
from llm_launch.store.observations import Observed, Recorded
from llm_launch.store.repository import EndpointRepository
from llm_launch.store.tables import EndpointRow
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend

OWNER = "alice"


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[EndpointRepository]:
    engine = open_database(database_url)
    try:
        yield EndpointRepository(engine)
    finally:
        await engine.dispose()


async def created(repository: EndpointRepository, count: int) -> list[Endpoint]:
    catalog = load_hardware_catalog()
    made = [
        await repository.create(OWNER, build_spec(endpoint_body(name=f"chat-{i}"), catalog))
        for i in range(count)
    ]
    return [endpoint for endpoint, _ in made]


def counting(repository: EndpointRepository, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch `repository.record` is handed, from now on."""
    sizes: list[int] = []
    record = repository.record

    async def counted(batch: Sequence[Observed]) -> list[Recorded]:
        sizes.append(len(batch))
        return await record(batch)

    monkeypatch.setattr(repository, "record", counted)
    return sizes


async def test_a_pass_commits_its_endpoints_statuses_a_batch_at_a_time(
    repository: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = await created(repository, 40)
    sizes = counting(repository, monkeypatch)

    await Reconciler(repository, FakeBackend()).reconcile_once()

    assert sum(sizes) == 40
    assert len(sizes) <= 4, sizes  # one transaction per endpoint before: 40, twice over
    for endpoint in endpoints:
        stored = await repository.get(OWNER, endpoint.name)
        assert (stored.status, stored.available_workers) == (EndpointStatus.READY, 1)


async def test_a_batch_keeps_each_writes_conditions_and_stamps_one_revision(
    repository: EndpointRepository,
) -> None:
    current, updated, deleting = await created(repository, 3)
    await repository.update_spec(updated, updated.spec)  # now at generation 2
    await repository.mark_deleting(deleting)
    table = RoutingTable(repository)
    await table.refresh()
    before = await repository.routing_revision()

    results = await repository.record(
        [
            Observed(current.id, 1, write_targets=True, targets='["http://a"]',
                     status=EndpointStatus.READY, reason="ready", available_workers=1),
            Observed(updated.id, 1, status=EndpointStatus.READY, reason="stale"),
            Observed(deleting.id, 1, status=EndpointStatus.READY, reason="too late"),
            Observed("ep_gone", 1, write_targets=True, status=EndpointStatus.READY),
        ]
    )  # fmt: skip

    assert results == [Recorded(True, True), Recorded(False, False), Recorded(False, False),
                       Recorded(False, False)]  # fmt: skip
    assert (await repository.routing_revision()) == before + 1
    async with repository._sessions() as session:
        stamped = (await session.execute(select(EndpointRow.id, EndpointRow.revision))).all()
    assert {i for i, revision in stamped if revision == before + 1} == {current.id}
    await table.refresh()  # the table follows the counter: it sees the batch's row
    found = table.lookup(OWNER, current.name)
    assert (found.status, found.status_reason) == (EndpointStatus.READY, "ready")
    assert (await repository.get(OWNER, updated.name)).status is EndpointStatus.UPDATE_PENDING


async def test_a_failed_batch_fails_its_writes_and_the_next_pass_makes_them(
    repository: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = await created(repository, 5)
    record = repository.record
    calls = 0

    async def failing_once(batch: Sequence[Observed]) -> list[Recorded]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await record(batch)

    monkeypatch.setattr(repository, "record", failing_once)
    reconciler = Reconciler(repository, FakeBackend())
    await reconciler.reconcile_once()  # one batch failed; the pass still ends
    await reconciler.reconcile_once()

    for endpoint in endpoints:
        assert (await repository.get(OWNER, endpoint.name)).status is EndpointStatus.READY


async def test_closing_the_writer_cancels_a_flush_and_its_waiters(
    repository: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    (endpoint,) = await created(repository, 1)
    started = asyncio.Event()

    async def hanging(batch: Sequence[Observed]) -> list[Recorded]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(repository, "record", hanging)
    writer = ObservationWriter(repository)
    observed = Observed(endpoint.id, 1, status=EndpointStatus.READY)
    waiter = asyncio.create_task(writer.write(observed))
    await started.wait()

    await asyncio.wait_for(writer.close(), timeout=5)

    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_writes_handed_in_during_a_flush_go_into_the_next_one(
    repository: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = await created(repository, 6)
    sizes = counting(repository, monkeypatch)
    writer = ObservationWriter(repository, max_batch=4)

    results = await asyncio.gather(
        *(writer.write(Observed(e.id, 1, status=EndpointStatus.READY)) for e in endpoints)
    )

    assert results == [Recorded(False, True)] * 6
    assert sizes == [4, 2]  # all handed in before the first flush ran; capped at max_batch
