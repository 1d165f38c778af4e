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
- `run_forever`, a full refresh from the database every REFRESH_S, for the writes of other
  processes (another API replica, a `gateway` process, the leader's reconciler): a delete
  or failure made elsewhere takes effect within one refresh.

A refresh reads a snapshot that may predate a local write made while it ran; an endpoint
written here meanwhile keeps its local state (`_touched`) rather than the older snapshot's.
The refresh costs one narrow query of every row's id, generation and status, and a full
read only of the rows whose generation changed (`EndpointRepository.list_routable`), so it
stays cheap at 10,000 endpoints (bench/routing_table.py, bench/README.md). If the database
is unreachable the table keeps serving what it last knew: inference keeps flowing to
endpoints that were running.

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
from collections.abc import Sequence

from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import NotFound
from llm_launch.domain.inputs import clip
from llm_launch.domain.status import EndpointStatus
from llm_launch.store.repository import EndpointRepository

__all__ = ["REFRESH_S", "RoutingTable", "decode_targets", "encode_targets"]

log = logging.getLogger("llm_launch.routing_table")

REFRESH_S = 1.0  # a write made by another process reaches the table within this (plus a read)


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
    ) -> None:
        """`repository` None: a table kept only by `put`/`remove` (unit tests).
        `stored_targets`: also read the targets the reconciler stored (see `targets`)."""
        self.repository = repository
        self.refresh_s = REFRESH_S if refresh_s is None else refresh_s
        self.stored_targets = stored_targets
        self._targets: dict[str, list[str]] = {}  # by id, with stored_targets
        self._stored: dict[str, str | None] = {}  # their stored text, to decode changes only
        self._by_name: dict[tuple[str, str], Endpoint] = {}
        self._by_id: dict[str, Endpoint] = {}
        self._known: dict[str, Endpoint] = {}  # the last refresh's rows
        self._touched: set[str] = set()  # ids written here since the running refresh began
        self.refreshes = 0  # completed full refreshes (tests wait on it)

    def __len__(self) -> int:
        return len(self._by_id)

    def lookup(self, owner: str, name: str) -> Endpoint:
        """The owner's endpoint; NotFound for an unknown name, another owner's endpoint or
        one being deleted, with the words of `EndpointRepository.get`."""
        endpoint = self._by_name.get((owner, name))
        if endpoint is None:
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
        """Replace the table with the database's endpoints (but those written here while
        the read ran, whose local state is newer than the snapshot)."""
        assert self.repository is not None
        self._touched = set()
        if self.stored_targets:
            rows = self._keep_targets(await self.repository.list_routes(self._known))
        else:
            rows = await self.repository.list_routable(self._known)
        self._known = {e.id: e for e in rows}
        by_id = {e.id: e for e in rows if e.id not in self._touched}
        for endpoint_id in self._touched:
            local = self._by_id.get(endpoint_id)
            if local is not None:
                by_id[endpoint_id] = local
        self._by_id = by_id
        self._by_name = {(e.owner, e.name): e for e in by_id.values()}
        self.refreshes += 1

    def _keep_targets(self, routes: list[tuple[Endpoint, str | None]]) -> list[Endpoint]:
        """Take the stored targets of a refresh (decoding only those that changed)."""
        targets: dict[str, list[str]] = {}
        stored: dict[str, str | None] = {}
        for endpoint, text in routes:
            stored[endpoint.id] = text
            if endpoint.id in self._targets and self._stored.get(endpoint.id) == text:
                targets[endpoint.id] = self._targets[endpoint.id]
            else:
                targets[endpoint.id] = decode_targets(text)
        self._targets, self._stored = targets, stored
        return [endpoint for endpoint, _ in routes]

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
