"""What reconciler passes observed, recorded many endpoints to a transaction.

Called by `services/observation_writer.py` through `EndpointRepository.record`. One
transaction per batch instead of two per endpoint (`set_targets`, `set_status`): on SQLite
each commit waits for the one lock and a sync, so a first pass over 10,000 endpoints that
each needed a status took minutes writing one at a time, on the event loop the inference
routes share (bench/gateway_scaling.py). Core statements, not ORM updates: the same rows
and conditions, a fraction of the CPU per row.

Each endpoint's writes are those of `set_targets` and `set_status` (a status only while
the row is at the observed generation and not being deleted), and every row written is
stamped with one new routing revision (`store/revisions.py`), incremented after the rows'
own updates so that the counter's lock is still the last one the transaction takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_launch.domain.status import EndpointStatus
from llm_launch.store import revisions
from llm_launch.store.tables import EndpointRow

__all__ = ["Observed", "Recorded", "record"]

_TABLE = cast(Table, EndpointRow.__table__)
_TARGETS = update(_TABLE).where(_TABLE.c.id == bindparam("b_id")).values(targets=bindparam("b_t"))
_STATUS = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("b_id"),
        _TABLE.c.generation == bindparam("b_gen"),
        _TABLE.c.status != EndpointStatus.DELETE_IN_PROGRESS.value,
    )
    .values(
        status=bindparam("b_status"),
        status_reason=bindparam("b_reason"),
        available_workers=bindparam("b_available"),
        unavailable_workers=bindparam("b_unavailable"),
    )
)
_STAMP_CHUNK = 500  # ids per `IN (...)`: well under every database's bound-parameter limit


@dataclass(frozen=True, slots=True)
class Observed:
    """One endpoint's writes: its targets when `write_targets`, its status when `status`."""

    endpoint_id: str
    generation: int
    write_targets: bool = False
    targets: str | None = None  # JSON text, None for none ready
    status: EndpointStatus | None = None
    reason: str | None = None
    available_workers: int = 0
    unavailable_workers: int = 0


@dataclass(frozen=True, slots=True)
class Recorded:
    """What was written: False where the row is gone (or, for a status, has moved on)."""

    targets: bool = False
    status: bool = False


async def record(session: AsyncSession, batch: Sequence[Observed]) -> list[Recorded]:
    """Write `batch` in `session`'s transaction; one result per item, in order."""
    connection = await session.connection()
    results: list[Recorded] = []
    for item in batch:
        targets = status = False
        if item.write_targets:
            stored = {"b_id": item.endpoint_id, "b_t": item.targets}
            targets = bool((await connection.execute(_TARGETS, stored)).rowcount)
        if item.status is not None:
            observed: dict[str, object] = {
                "b_id": item.endpoint_id,
                "b_gen": item.generation,
                "b_status": item.status.value,
                "b_reason": item.reason,
                "b_available": item.available_workers,
                "b_unavailable": item.unavailable_workers,
            }
            status = bool((await connection.execute(_STATUS, observed)).rowcount)
        results.append(Recorded(targets, status))
    written = [
        item.endpoint_id
        for item, done in zip(batch, results, strict=True)
        if done.targets or done.status
    ]
    if written:
        revision = await revisions.increment(session)
        for start in range(0, len(written), _STAMP_CHUNK):
            chunk = written[start : start + _STAMP_CHUNK]
            stamp = update(_TABLE).where(_TABLE.c.id.in_(chunk)).values(revision=revision)
            await connection.execute(stamp)
    return results
