"""The inference routes' view of the endpoints: (owner, name) -> endpoint, in memory.

Every routed request looks its endpoint up here (`services/inference.py`), so the hot path
reads no database and hops to no thread. The table holds the stored `Endpoint` (id, status
and reason, spec with the served name and routing policy, forwarder token); the ready
targets are asked of the backend at each request, which keeps them in memory already
(local: its running groups; Kubernetes: its watch caches), so readiness is never staler
than the backend's own view.

Three writers keep it current:

- this process's endpoint service (`services/endpoints.py`): a create, update or delete
  here is in the table at once;
- the reconciler (`services/reconciler.py`), after each status write: a failure shows in
  the 503's status at once;
- `run_forever`, a refresh from the database every REFRESH_S, for the writes of other
  processes (another API replica, a `gateway` process, the leader's reconciler): a delete
  or failure made elsewhere takes effect within one refresh.

A refresh reads the database's change counter first (store/revisions.py): unchanged since
the last refresh, it reads nothing else, so an idle refresh costs one one-row query at any
number of endpoints. Changed, it reads only the rows stamped after the last counter it read
and the removals since (`EndpointRepository.list_routes(since=...)`, `removed_since`), a
cost in proportion to the changes, and remembers the counter value it read first (a row
committed after that read is read again next time, harmlessly). The first refresh, one
whose reader fell behind the removals kept, and every FULL_EVERY-th refresh (a safety net:
rows written without the counter, as by a replica not yet upgraded) read every routable
row instead: one narrow query of every row's id, generation and status, and a full read
only of the rows whose generation changed (bench/routing_table.py, bench/README.md).

A refresh reads a snapshot that may predate a local write made while it ran; an endpoint
written here meanwhile keeps its local state (`_touched`) rather than the older snapshot's
(a removal is final, though: ids are never reused). If the database is unreachable the
table keeps serving what it last knew: inference keeps flowing to endpoints that were
running.

A table made with `stored_targets=True` (a `llm-launch gateway` process, which runs no
backend) also reads each endpoint's ready targets as the reconciler stored them
(`EndpointRepository.list_routes`) and hands them out through `targets`, so it serves as
the inference router's target source; such targets lag the backend's own view by up to a
reconciler pass plus one refresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence

from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import NotFound, ServiceUnavailable
from llm_launch.domain.inputs import clip
from llm_launch.domain.status import EndpointStatus
from llm_launch.store.repository import EndpointRepository

__all__ = ["FULL_EVERY", "REFRESH_S", "RoutingTable", "decode_targets", "encode_targets"]

log = logging.getLogger("llm_launch.routing_table")

REFRESH_S = 1.0  # a write made by another process reaches the table within this (plus a read)
# Refreshes between two full reads (the safety net; see the module docstring): ten minutes.
# A full read holds the event loop for 50-170 ms at 10,000 endpoints, which showed in a
# gateway's p99.9 when it came every minute (bench/gateway_scaling.py's p99 part).
FULL_EVERY = 600


def encode_targets(targets: Sequence[str]) -> str | None:
    """The stored form of ready targets: a sorted JSON list (the same set, the same
    text), None for none."""
    return json.dumps(sorted(targets)) if targets else None


def decode_targets(stored: str | None) -> list[str]:
    """The targets `encode_targets` stored; none for anything else (a row written by
    hand, say), which routes nothing rather than failing the refresh."""
    if not stored:
        return []
    try:
        value = json.loads(stored)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [t for t in value if isinstance(t, str)]


class RoutingTable:
    def __init__(
        self,
        repository: EndpointRepository | None,
        refresh_s: float | None = None,
        *,
        stored_targets: bool = False,
        full_every: int = FULL_EVERY,
    ) -> None:
        """`repository` None: a table kept only by `put`/`remove` (unit tests).
        `stored_targets`: also read the targets the reconciler stored (see `targets`).
        `full_every`: refreshes between two full reads."""
        self.repository = repository
        self.refresh_s = REFRESH_S if refresh_s is None else refresh_s
        self.stored_targets = stored_targets
        self.full_every = full_every
        self._revision: int | None = None  # the change counter the table is current with
        self._since_full = 0  # refreshes since the last full read
        self._targets: dict[str, list[str]] = {}  # by id, with stored_targets
        self._stored: dict[str, str | None] = {}  # their stored text, to decode changes only
        self._by_name: dict[tuple[str, str], Endpoint] = {}
        self._by_id: dict[str, Endpoint] = {}
        self._known: dict[str, Endpoint] = {}  # the database's rows as refreshes read them
        self._touched: set[str] = set()  # ids written here since the running refresh began
        self.refreshes = 0  # completed refreshes (tests wait on it)
        self.refreshed_at = time.monotonic()  # when the last refresh completed
        self.full_reads = 0  # of which read every row

    def __len__(self) -> int:
        return len(self._by_id)

    def count_by_status(self) -> dict[EndpointStatus, int]:
        """How many endpoints the table holds in each status (for /metrics)."""
        counts: dict[EndpointStatus, int] = {}
        for endpoint in self._by_id.values():
            counts[endpoint.status] = counts.get(endpoint.status, 0) + 1
        return counts

    def lookup(self, owner: str, name: str) -> Endpoint:
        """The owner's endpoint; NotFound for an unknown name, another owner's endpoint or
        one being deleted, with the words of `EndpointRepository.get`. Before the first
        refresh of a table read from the database, ServiceUnavailable: not knowing an
        endpoint yet is not knowing it is gone."""
        endpoint = self._by_name.get((owner, name))
        if endpoint is None:
            if self.refreshes == 0 and self.repository is not None:
                raise ServiceUnavailable("the routing table has not been loaded yet")
            raise NotFound(f"no endpoint named {clip(name)}")
        return endpoint

    def targets(self, endpoint: Endpoint) -> list[str]:
        """The endpoint's ready targets as last stored (with `stored_targets`): this table
        is then the inference router's target source in place of a backend."""
        return self._targets.get(endpoint.id, [])

    def put(self, endpoint: Endpoint) -> None:
        """Record a write made in this process (create, update); a deleting one leaves."""
        self._touched.add(endpoint.id)
        if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
            self._drop(endpoint.id)
            return
        self._drop(endpoint.id)
        self._by_id[endpoint.id] = endpoint
        self._by_name[(endpoint.owner, endpoint.name)] = endpoint

    def remove(self, endpoint_id: str) -> None:
        """The endpoint takes no more traffic here (its delete began in this process)."""
        self._touched.add(endpoint_id)
        self._drop(endpoint_id)

    def observed(
        self,
        endpoint_id: str,
        generation: int,
        status: EndpointStatus,
        reason: str | None,
        available_workers: int,
        unavailable_workers: int,
    ) -> None:
        """A status the reconciler recorded for `generation`: applied unless the entry has
        moved on to a newer spec meanwhile (the store ignores that write too)."""
        current = self._by_id.get(endpoint_id)
        if current is None or current.generation != generation:
            return
        self.put(
            dataclasses.replace(
                current,
                status=status,
                status_reason=reason,
                available_workers=available_workers,
                unavailable_workers=unavailable_workers,
            )
        )

    async def refresh(self) -> None:
        """Bring the table up to the database's endpoints (but those written here while
        the read ran, whose local state is newer than the snapshot): only what changed
        since the last refresh, or everything (see the module docstring)."""
        assert self.repository is not None
        self._touched = set()
        revision = await self.repository.routing_revision()
        if not await self._caught_up(revision):
            self._replace(await self.repository.list_routes(self._known))
            self._since_full = 0
            self.full_reads += 1
        self._revision = revision
        self._since_full += 1
        self.refreshes += 1
        self.refreshed_at = time.monotonic()

    async def _caught_up(self, revision: int) -> bool:
        """Apply the changes made after the last counter read up to `revision` (none to
        read if it has not moved); False, having changed nothing, when a full read is due."""
        assert self.repository is not None
        since = self._revision
        if since is None or self._since_full >= self.full_every or revision < since:
            return False  # first, safety net, or a counter gone back (a database restored)
        if revision == since:
            return True
        removed = await self.repository.removed_since(since)
        if removed is None:  # this table is further behind than the removals kept
            return False
        changed = await self.repository.list_routes(self._known, since=since)
        for endpoint, stored in changed:
            if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
                self._forget(endpoint.id)
                continue
            self._known[endpoint.id] = endpoint
            if self.stored_targets:
                self._keep_target(endpoint.id, stored)
            if endpoint.id not in self._touched:
                self._drop(endpoint.id)
                self._by_id[endpoint.id] = endpoint
                self._by_name[(endpoint.owner, endpoint.name)] = endpoint
        for endpoint_id in removed:
            self._forget(endpoint_id)
        return True

    def _replace(self, routes: list[tuple[Endpoint, str | None]]) -> None:
        """Take a full read's rows as the table (bar those written here meanwhile)."""
        if self.stored_targets:
            previous = self._stored
            self._stored = {}
            for endpoint, stored in routes:
                self._keep_target(endpoint.id, stored, previous)
            self._targets = {i: self._targets[i] for i in self._stored}
        rows = [endpoint for endpoint, _ in routes]
        self._known = {e.id: e for e in rows}
        by_id = {e.id: e for e in rows if e.id not in self._touched}
        for endpoint_id in self._touched:
            local = self._by_id.get(endpoint_id)
            if local is not None:
                by_id[endpoint_id] = local
        self._by_id = by_id
        self._by_name = {(e.owner, e.name): e for e in by_id.values()}

    def _keep_target(
        self, endpoint_id: str, stored: str | None, previous: dict[str, str | None] | None = None
    ) -> None:
        """Take an endpoint's stored targets, decoding them only if their text changed
        since `previous` (by default, what the table holds)."""
        previous = self._stored if previous is None else previous
        if endpoint_id not in previous or previous[endpoint_id] != stored:
            self._targets[endpoint_id] = decode_targets(stored)
        self._stored[endpoint_id] = stored

    def _forget(self, endpoint_id: str) -> None:
        """The endpoint is gone from the database (or being deleted there): for good."""
        self._known.pop(endpoint_id, None)
        self._targets.pop(endpoint_id, None)
        self._stored.pop(endpoint_id, None)
        self._drop(endpoint_id)

    async def run_forever(self) -> None:
        """Refresh every `refresh_s` for as long as the server runs."""
        failing = False
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:  # keep routing on what we knew; say so once per outage
                if not failing:
                    log.exception("routing table refresh failed; serving the last one read")
                failing = True
            else:
                if failing:
                    log.warning("routing table refreshed again")
                failing = False

    def _drop(self, endpoint_id: str) -> None:
        old = self._by_id.pop(endpoint_id, None)
        if old is not None and self._by_name.get((old.owner, old.name)) is old:
            del self._by_name[(old.owner, old.name)]
