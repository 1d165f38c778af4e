"""The routing change counter: what lets a routing table refresh read only what changed.

Called by `store/repository.py` inside its write transactions (`stamp`, `stamp_removal`)
and by its routing reads (`current`, `removed_since`), for `services/routing_table.py`.

One row (`routing_revision`) holds a revision number. Every write that changes what a
routing table holds (an endpoint's create, spec update, status, reason and worker counts,
stored targets, the start of its delete, its removal) increments it in the same
transaction and stamps the endpoint row with the new revision (`endpoints.revision`,
indexed). A table remembers the counter it last read: the same value means nothing
changed and no row is read; otherwise it reads the rows stamped after it, and the
removals recorded after it (`endpoint_removals`: a deleted row cannot be read).

Why a counter row and not a sequence: the increment takes the counter row's lock, held
until commit, and is the last statement of the transaction. A second writer's increment
waits for the first to commit and then counts on from its value, so revisions commit in
their order: once a reader sees revision R committed, every revision below R has committed
too, and "rows with revision > the last R read" misses none. With a sequence, a
transaction could draw 5, another draw 6 and commit, a reader move past 6, and then 5
commit, unseen for ever. (SQLite has one writer at a time: the order holds trivially.)

The cost: one hot row on PostgreSQL. Writes that change routing state commit one at a
time, each holding the counter from its increment to its commit (a statement or two and
the commit itself), so taking it last keeps that window short; it is also what keeps it
from deadlocking, since a transaction that holds it waits for no other lock after it.
Writes that routing does not read (a teardown's heartbeat, `touch_deleting`) leave it alone.

Removals are kept for the last REMOVALS_KEPT revisions; `pruned` records the highest
revision pruned, and a reader whose last revision is below it reads everything instead
(it could have missed a delete).
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_launch.store.tables import EndpointRemovalRow, EndpointRow, RoutingRevisionRow

__all__ = ["REMOVALS_KEPT", "current", "increment", "removed_since", "stamp", "stamp_removal"]

REMOVALS_KEPT = 10_000  # revisions of removals kept: a reader this far behind reads all
_COUNTER = RoutingRevisionRow.id == 1  # the one row, inserted by migration 0004


async def stamp(session: AsyncSession, endpoint_id: str) -> int:
    """Increment the counter and stamp the endpoint row with the new revision. Must be the
    transaction's last write (see the module docstring); returns the revision."""
    revision = await increment(session)
    await session.execute(
        update(EndpointRow).where(EndpointRow.id == endpoint_id).values(revision=revision),
        execution_options={"synchronize_session": False},
    )
    return revision


async def stamp_removal(session: AsyncSession, endpoint_id: str, kept: int = REMOVALS_KEPT) -> int:
    """Increment the counter, record the endpoint's removal at the new revision and prune
    removals older than `kept` revisions. Must be the transaction's last write."""
    revision = await increment(session)
    await session.execute(
        insert(EndpointRemovalRow).values(revision=revision, endpoint_id=endpoint_id)
    )
    pruned = (
        await session.scalars(
            delete(EndpointRemovalRow)
            .where(EndpointRemovalRow.revision <= revision - kept)
            .returning(EndpointRemovalRow.revision),
            execution_options={"synchronize_session": False},
        )
    ).all()
    if pruned:  # all that remain are above it: a reader at or past it misses no delete
        await session.execute(
            update(RoutingRevisionRow).where(_COUNTER).values(pruned=max(pruned)),
            execution_options={"synchronize_session": False},
        )
    return revision


async def current(session: AsyncSession) -> int:
    """The counter: the revision of the last committed change."""
    return (await session.execute(select(RoutingRevisionRow.revision).where(_COUNTER))).scalar_one()


async def removed_since(session: AsyncSession, since: int) -> list[str] | None:
    """Ids of the endpoints removed after revision `since`; None when removals after it
    may have been pruned (the caller then reads everything)."""
    removed = (
        await session.scalars(
            select(EndpointRemovalRow.endpoint_id).where(EndpointRemovalRow.revision > since)
        )
    ).all()
    # Read after the removals: a prune that took one of those we need committed before that
    # read, so it shows here (pruning raises `pruned` in the same transaction).
    pruned = (await session.execute(select(RoutingRevisionRow.pruned).where(_COUNTER))).scalar_one()
    return None if pruned > since else list(removed)


async def increment(session: AsyncSession) -> int:
    """Increment the counter; the caller stamps the rows it wrote with the new revision
    (`stamp` does it for one). Must come after the transaction's own writes."""
    # The transaction's own writes go first (an ORM insert is pending until a flush), so
    # that the counter's lock is the last one taken.
    await session.flush()
    result = await session.execute(
        update(RoutingRevisionRow)
        .where(_COUNTER)
        .values(revision=RoutingRevisionRow.revision + 1)
        .returning(RoutingRevisionRow.revision),
        execution_options={"synchronize_session": False},
    )
    return int(result.scalar_one())
