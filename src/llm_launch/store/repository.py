"""EndpointRepository: every read and write of endpoints and their recorded operations.

Called by `services/`; nothing above this module writes SQL. Each method is one
transaction, and owner scoping happens here so no caller can forget it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import Conflict, NotFound, QuotaExceeded
from llm_launch.domain.inputs import clip
from llm_launch.domain.names import dns1123_label_problem
from llm_launch.domain.quotas import Quota, Usage, quota_problems
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus
from llm_launch.store import observations, revisions
from llm_launch.store.observations import Observed, Recorded
from llm_launch.store.revisions import REMOVALS_KEPT
from llm_launch.store.rows import same_state, to_endpoint, utc
from llm_launch.store.tables import EndpointRow, OperationRow

# Rows list_all converts between two suspensions. Read and converted at once, 10,000 rows
# held the event loop (and the inference routes `serve` runs on it) for 110-210 ms.
PARTITION = 200
# Full rows read and decoded at once (a spec's decoding is the costly part): at 10,000 at
# once, the first pass after a restart held the loop for 860 ms.
FULL_PARTITION = 50


class EndpointOrder(StrEnum):
    """How a list is sorted: Launch's `ModelEndpointOrderBy`."""

    NEWEST = "newest"
    OLDEST = "oldest"
    ALPHABETICAL = "alphabetical"


def _order_by(order: EndpointOrder, dialect: str) -> tuple[Any, ...]:
    """The ORDER BY of `order`. Names sort by code point on every database: PostgreSQL's
    default collation may follow the locale, which skips hyphens ("a-c" before "ab").
    Names are unique per owner, so they also make equal creation times list stably."""
    name = EndpointRow.name.collate("C") if dialect == "postgresql" else EndpointRow.name
    if order is EndpointOrder.NEWEST:
        return (EndpointRow.created_at.desc(), name)
    if order is EndpointOrder.OLDEST:
        return (EndpointRow.created_at, name)
    return (name,)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class EndpointRepository:
    def __init__(self, engine: AsyncEngine, *, removals_kept: int = REMOVALS_KEPT) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._dialect = engine.dialect.name
        self._removals_kept = removals_kept  # see store/revisions.py

    async def ping(self) -> str | None:
        """None when the database answers; otherwise why it does not."""
        try:
            async with self._sessions() as session:
                await session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"database unavailable: {type(exc).__name__}"
        return None

    async def create(
        self, owner: str, spec: EndpointSpec, quota: Quota | None = None
    ) -> tuple[Endpoint, str]:
        """Insert the endpoint and its `create` operation; Conflict if the owner has the name.

        With `quota`, QuotaExceeded if the owner's endpoints and this one would exceed it;
        the check and the insert are one transaction under the owner's quota lock.
        """
        now = _now()
        row = EndpointRow(
            id=_new_id("end"),
            owner=owner,
            name=spec.name,
            spec=spec.to_dict(),
            status=EndpointStatus.UPDATE_PENDING.value,
            status_reason="waiting for a backend to deploy it",
            generation=1,
            available_workers=0,
            unavailable_workers=0,
            created_at=now,
            last_updated_at=now,
            forwarder_token=secrets.token_urlsafe(32),  # this endpoint's data-plane secret
        )
        operation = self._operation(row, "create", now)
        try:
            async with self._sessions.begin() as session:
                if quota is not None:
                    await self._admit(session, owner, spec, quota)
                session.add_all([row, operation])
                await revisions.stamp(session, row.id)
        except IntegrityError as exc:
            raise Conflict(await self._name_taken(owner, spec.name)) from exc
        return to_endpoint(row), operation.id

    async def _name_taken(self, owner: str, name: str) -> str:
        """Why `owner` cannot have an endpoint named `name` now: it has one, or one whose
        teardown has not finished (its objects still exist under that name)."""
        async with self._sessions() as session:
            status = await session.scalar(
                select(EndpointRow.status).where(
                    EndpointRow.owner == owner, EndpointRow.name == name
                )
            )
        if status == EndpointStatus.DELETE_IN_PROGRESS.value:
            return (
                f"endpoint {name!r} is still being deleted; try again when its teardown "
                "has finished"
            )
        return f"an endpoint named {name!r} already exists"

    async def get(self, owner: str, name: str) -> Endpoint:
        """The owner's endpoint; NotFound also once its delete began (DELETE answers at
        once and the endpoint leaves every view then, its teardown going on unseen)."""
        # A name that breaks the naming rule names no endpoint; it never reaches the
        # database, which may refuse it outright (PostgreSQL: a NUL in text is an error).
        row = None
        if dns1123_label_problem(name) is None:
            async with self._sessions() as session:
                row = await session.scalar(
                    select(EndpointRow).where(
                        EndpointRow.owner == owner, EndpointRow.name == name, _not_deleting()
                    )
                )
        if row is None:
            raise NotFound(f"no endpoint named {clip(name)}")
        return to_endpoint(row)

    async def list_owned(
        self,
        owner: str,
        name: str | None = None,
        *,
        include_deleting: bool = False,
        order: EndpointOrder = EndpointOrder.OLDEST,
    ) -> list[Endpoint]:
        """The owner's endpoints in `order`; with `include_deleting`, also those whose
        teardown is still going on (DELETE_IN_PROGRESS, with its progress or failure as
        the reason)."""
        query = select(EndpointRow).where(EndpointRow.owner == owner)
        if not include_deleting:
            query = query.where(_not_deleting())
        if name is not None:
            query = query.where(EndpointRow.name == name)
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(*_order_by(order, self._dialect)))).all()
        return [to_endpoint(r) for r in rows]

    async def list_all(self, known: Mapping[str, Endpoint] | None = None) -> list[Endpoint]:
        """Endpoints of every owner: what the reconciler works through.

        With `known` (the previous pass's result, by id), only endpoints whose generation
        changed are read in full; the others are rebuilt from their status columns, so a
        pass over many endpoints does not decode every spec again.
        """
        known = known or {}
        columns = select(
            EndpointRow.id,
            EndpointRow.generation,
            EndpointRow.status,
            EndpointRow.status_reason,
            EndpointRow.available_workers,
            EndpointRow.unavailable_workers,
            EndpointRow.last_updated_at,
        ).order_by(EndpointRow.last_updated_at)
        states, fresh = await self._states_and_changed(columns, known)
        endpoints = []
        for number, state in enumerate(states, 1):
            if number % PARTITION == 0:
                await asyncio.sleep(0)  # the event loop's other work goes on (see PARTITION)
            base = fresh.get(state.id) or known.get(state.id)
            if base is None:  # created and read between the two queries' snapshots
                continue
            if same_state(base, state):
                endpoints.append(base)
                continue
            endpoints.append(
                dataclasses.replace(
                    base,
                    status=EndpointStatus(state.status),
                    status_reason=state.status_reason,
                    available_workers=state.available_workers,
                    unavailable_workers=state.unavailable_workers,
                    last_updated_at=utc(state.last_updated_at),
                )
                if base.generation == state.generation
                else base
            )
        return endpoints

    async def _states_and_changed(
        self, columns: Any, known: Mapping[str, Endpoint]
    ) -> tuple[Sequence[Any], dict[str, Endpoint]]:
        """The narrow `columns` (id and generation first) of every row, then in the same
        session the full endpoints of those new or whose generation differs from `known`'s,
        read and decoded a few at a time (see PARTITION)."""
        states: list[Any] = []
        stale: list[str] = []
        fresh: dict[str, Endpoint] = {}
        async with self._sessions() as session:
            async for part in (await session.stream(columns)).partitions(PARTITION):
                states.extend(part)
                stale.extend(
                    s.id
                    for s in part
                    if s.id not in known or known[s.id].generation != s.generation
                )
            for start in range(0, len(stale), FULL_PARTITION):
                chosen = EndpointRow.id.in_(stale[start : start + FULL_PARTITION])
                rows = (await session.scalars(select(EndpointRow).where(chosen))).all()
                fresh.update((row.id, to_endpoint(row)) for row in rows)
        return states, fresh

    async def stored_targets(self) -> dict[str, str | None]:
        """Every endpoint's stored targets (the JSON text `set_targets` wrote, None for
        none), by id: what a reconciler taking the lead starts from, so that it rewrites
        only the targets that differ from its backend's view."""
        targets: dict[str, str | None] = {}
        query = select(EndpointRow.id, EndpointRow.targets)
        async with self._sessions() as session:
            async for part in (await session.stream(query)).partitions(PARTITION):
                targets.update((row.id, row.targets) for row in part)
        return targets

    async def routing_revision(self) -> int:
        """The change counter (store/revisions.py): unchanged, no routing state changed."""
        async with self._sessions() as session:
            return await revisions.current(session)

    async def removed_since(self, since: int) -> list[str] | None:
        """Ids removed after revision `since`; None if some may be pruned (read all)."""
        async with self._sessions() as session:
            return await revisions.removed_since(session, since)

    async def list_routes(
        self, known: Mapping[str, Endpoint], since: int | None = None
    ) -> list[tuple[Endpoint, str | None]]:
        """Endpoints not being deleted, each with its stored targets (the JSON text the
        reconciler wrote with `set_targets`, None when none is ready). Narrower than
        `list_all`: one query of ids, generations, statuses and targets (no timestamps to
        parse, no order), a full read only of rows whose generation changed, and a changed
        status applied to the known endpoint (its worker counts and timestamps may lag:
        routing reads neither). With `since`, only rows stamped after that revision, those
        being deleted included (store/revisions.py; `services/routing_table.py` drops them).
        """
        columns = select(
            EndpointRow.id,
            EndpointRow.generation,
            EndpointRow.status,
            EndpointRow.status_reason,
            EndpointRow.targets,
        ).where(_not_deleting() if since is None else EndpointRow.revision > since)
        states, fresh = await self._states_and_changed(columns, known)
        routes = []
        for number, (endpoint_id, generation, status, reason, targets) in enumerate(states, 1):
            if number % PARTITION == 0:
                await asyncio.sleep(0)  # as in list_all
            base = fresh.get(endpoint_id) or known.get(endpoint_id)
            if base is None or base.generation != generation:
                continue  # created or updated between the two reads: the next refresh has it
            if base.status.value != status or base.status_reason != reason:
                base = dataclasses.replace(
                    base, status=EndpointStatus(status), status_reason=reason
                )
            routes.append((base, targets))
        return routes

    async def set_targets(self, endpoint_id: str, targets: str | None) -> bool:
        """Store the endpoint's ready targets (JSON text, None for none); False if the row
        is gone. Neither its generation nor its timestamps change: this is routing state,
        not a change anyone made (but a change for routing tables: its revision moves)."""
        query = update(EndpointRow).where(EndpointRow.id == endpoint_id).values(targets=targets)
        async with self._sessions.begin() as session:
            result = await session.execute(query)
            if result.rowcount:  # type: ignore[attr-defined]
                await revisions.stamp(session, endpoint_id)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def record(self, batch: Sequence[Observed]) -> list[Recorded]:
        """A reconciler's observations of many endpoints in one transaction: each item's
        targets and status written as `set_targets` and `set_status` would, one routing
        revision for all (store/observations.py)."""
        async with self._sessions.begin() as session:
            return await observations.record(session, batch)

    async def update_spec(
        self, current: Endpoint, spec: EndpointSpec, quota: Quota | None = None
    ) -> tuple[Endpoint, str]:
        """Store a new spec if nobody changed the endpoint since `current` was read.

        With `quota`, QuotaExceeded if the new spec takes the owner past it (the endpoint's
        own current usage counted out), checked under the owner's quota lock as in `create`.
        """
        now = _now()
        values = {
            "spec": spec.to_dict(),
            "generation": current.generation + 1,
            "status": EndpointStatus.UPDATE_PENDING.value,
            "status_reason": "update waiting for a backend to roll it out",
            "last_updated_at": now,
        }
        async with self._sessions.begin() as session:
            if quota is not None:
                await self._admit(session, current.owner, spec, quota, replacing=current)
            changed = await session.execute(
                update(EndpointRow)
                .where(
                    EndpointRow.id == current.id,
                    EndpointRow.generation == current.generation,
                    _not_deleting(),  # a delete that began since `current` was read wins
                )
                .values(**values)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(
                    f"endpoint {current.name!r} changed while this update was applied; retry"
                )
            row = await session.get_one(EndpointRow, current.id, populate_existing=True)
            operation = self._operation(row, "update", now)
            session.add(operation)
            await revisions.stamp(session, current.id)
        return to_endpoint(row), operation.id

    async def set_status(
        self,
        endpoint_id: str,
        status: EndpointStatus,
        reason: str | None,
        *,
        generation: int | None = None,
        available_workers: int | None = None,
        unavailable_workers: int | None = None,
    ) -> bool:
        """Record what a backend observed; False if the row is gone or has moved on.

        With `generation`, the write applies only while the endpoint is still at that
        generation, so an observation of an old spec never hides a newer update.
        """
        values: dict[str, object] = {"status": status.value, "status_reason": reason}
        if available_workers is not None:
            values["available_workers"] = available_workers
        if unavailable_workers is not None:
            values["unavailable_workers"] = unavailable_workers
        query = update(EndpointRow).where(EndpointRow.id == endpoint_id)
        if generation is not None:
            query = query.where(
                EndpointRow.generation == generation,
                EndpointRow.status != EndpointStatus.DELETE_IN_PROGRESS.value,
            )
        async with self._sessions.begin() as session:
            result = await session.execute(query.values(**values))
            if result.rowcount:  # type: ignore[attr-defined]
                await revisions.stamp(session, endpoint_id)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_deleting(self, endpoint: Endpoint) -> str:
        """Set DELETE_IN_PROGRESS and record the delete operation; returns its id.

        NotFound if the row is gone or already being deleted: one conditional UPDATE, so of
        concurrent deletes exactly one wins and the others are a clean 404 (the endpoint has
        left their view), never an ORM StaleDataError.
        """
        now = _now()
        async with self._sessions.begin() as session:
            changed = await session.execute(
                update(EndpointRow)
                .where(EndpointRow.id == endpoint.id, _not_deleting())
                .values(
                    status=EndpointStatus.DELETE_IN_PROGRESS.value,
                    status_reason="tearing down what it runs; the name is freed when it is gone",
                    last_updated_at=now,
                )
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound(f"no endpoint named {endpoint.name!r}")
            row = await session.get_one(EndpointRow, endpoint.id, populate_existing=True)
            operation = self._operation(row, "delete", now)
            session.add(operation)
            await revisions.stamp(session, endpoint.id)
        return operation.id

    async def touch_deleting(self, endpoint_id: str, reason: str | None = None) -> bool:
        """Refresh an endpoint being deleted (`last_updated_at`, and `reason` if given), so
        other replicas see its teardown is alive; False unless it is DELETE_IN_PROGRESS.
        No routing revision: routing tables hold no endpoint being deleted."""
        values: dict[str, object] = {"last_updated_at": _now()}
        if reason is not None:
            values["status_reason"] = reason
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(EndpointRow)
                .where(
                    EndpointRow.id == endpoint_id,
                    EndpointRow.status == EndpointStatus.DELETE_IN_PROGRESS.value,
                )
                .values(**values)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, endpoint_id: str, operation_id: str | None = None) -> bool:
        """Delete the endpoint row and close its delete operation (without `operation_id`,
        as when the reconciler finishes an interrupted delete: its pending ones); False if
        another delete removed the row first (then the operation is left as it was)."""
        async with self._sessions.begin() as session:
            removed = await session.execute(
                delete(EndpointRow).where(EndpointRow.id == endpoint_id)
            )
            if not removed.rowcount:  # type: ignore[attr-defined]
                return False
            closing = (
                OperationRow.id == operation_id
                if operation_id is not None
                else (
                    (OperationRow.endpoint_id == endpoint_id)
                    & (OperationRow.kind == "delete")
                    & (OperationRow.state == "pending")
                )
            )
            await session.execute(
                update(OperationRow).where(closing).values(state="done", finished_at=_now())
            )
            await revisions.stamp_removal(session, endpoint_id, self._removals_kept)
        return True

    async def _admit(
        self,
        session: AsyncSession,
        owner: str,
        spec: EndpointSpec,
        quota: Quota,
        replacing: Endpoint | None = None,
    ) -> None:
        """Raise QuotaExceeded unless `spec` fits `owner`'s quota. Must be the first statement
        of a write transaction, so no concurrent create or update of the owner reads between
        this check and the write."""
        await self._lock_owner(session, owner)
        query = select(EndpointRow.spec, EndpointRow.status).where(EndpointRow.owner == owner)
        if replacing is not None:
            query = query.where(EndpointRow.id != replacing.id)
        # An endpoint being deleted holds its GPUs until its teardown ends: counted, and
        # named apart in a refusal so its owner knows the usage will drop.
        rows = (await session.execute(query)).all()
        in_use = Usage.total(EndpointSpec.from_dict(r.spec) for r in rows)
        deleting = Usage.total(
            EndpointSpec.from_dict(r.spec)
            for r in rows
            if r.status == EndpointStatus.DELETE_IN_PROGRESS.value
        )
        before = replacing.spec if replacing is not None else None
        if problems := quota_problems(
            owner, quota, in_use, spec, replacing=before, deleting=deleting
        ):
            raise QuotaExceeded(problems)

    async def _lock_owner(self, session: AsyncSession, owner: str) -> None:
        """Serialize quota checks per owner until the transaction ends."""
        if self._dialect == "postgresql":
            # A transaction-scoped advisory lock: other owners never wait on it.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _owner_lock_key(owner)}
            )
        elif self._dialect == "sqlite":
            # pysqlite begins a transaction only before the first write, so the usage read
            # would run outside it; BEGIN IMMEDIATE takes the (single) writer lock first.
            await session.execute(text("BEGIN IMMEDIATE"))

    @staticmethod
    def _operation(row: EndpointRow, kind: str, now: datetime) -> OperationRow:
        return OperationRow(
            id=_new_id("op"),
            endpoint_id=row.id,
            owner=row.owner,
            kind=kind,
            generation=row.generation,
            state="pending",
            message=None,
            created_at=now,
            finished_at=None,
        )


def _not_deleting() -> Any:
    """Rows whose delete has not begun: what an owner sees and may change."""
    return EndpointRow.status != EndpointStatus.DELETE_IN_PROGRESS.value


def _owner_lock_key(owner: str) -> int:
    """A stable signed 64-bit advisory-lock key for `owner`'s quota."""
    digest = hashlib.sha256(f"llm-launch.quota:{owner}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
