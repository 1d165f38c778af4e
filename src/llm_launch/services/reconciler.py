"""The reconciler: drives every endpoint towards its spec through the backend.

Started by the API server (api/app.py) as one background task. Each pass lists the
endpoints, asks the backend to apply each one (idempotent), observes it, and records
status, reason and worker counts when they change. It also finishes deletes that nobody
carries out any more (a crash or restart interrupted them, or a replica that began them
went away: `services/deletes.py` does the teardown, with retries), and on its first pass
lets the backend stop leftovers of endpoints that no longer exist.

Endpoints are isolated from one another (many owners share a server): CONCURRENCY
workers share the pass's endpoints, each endpoint bounded by `endpoint_timeout_s`, and
whatever goes wrong with one (any exception, or a backend that does not answer) is
recorded in that endpoint's status while the pass goes on with the rest.

Each pass also stores every endpoint's ready targets (the backend's forwarder URLs) in
its row when they changed since this reconciler last wrote them, for `llm-launch gateway`
processes, which route inference without a backend of their own (`cli/gateway.py`).

What the workers observed is written through one `ObservationWriter`: group commit, many
endpoints' statuses and targets to a transaction (`services/observation_writer.py`).

A `PassObserver` (the app's metrics, `api/metrics.py`) hears how long each pass took and
whether this reconciler is running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from llm_launch.backends.base import Backend, Observation
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import LaunchError
from llm_launch.domain.status import EndpointStatus
from llm_launch.runtime.deadlines import deadline
from llm_launch.runtime.loop_share import SLICE_S, LoopShare
from llm_launch.services.deletes import Teardowns
from llm_launch.services.observation_writer import ObservationWriter
from llm_launch.services.routing_table import RoutingTable, encode_targets
from llm_launch.store.observations import Observed
from llm_launch.store.repository import EndpointRepository

log = logging.getLogger("llm_launch.reconciler")

# A delete still DELETE_IN_PROGRESS, not carried out by this process and not refreshed for
# this long was interrupted (by a server that died after this one started, or on another
# replica): a live teardown refreshes its row every deletes.HEARTBEAT_S, and waits at most
# Backoff.cap_s between retries, both well under it.
STALE_DELETE = timedelta(seconds=60)
ENDPOINT_TIMEOUT_S = 30.0  # one endpoint's apply + observe; then UPDATE_FAILED, retried
CONCURRENCY = 64  # endpoints handled at once in a pass (workers sharing its queue)
MAX_REASON = 300  # characters of an unexpected error kept in status_reason


class PassObserver(Protocol):
    def leading(self, yes: bool) -> None:
        """This reconciler runs (True) or has stopped (False)."""

    def passed(self, seconds: float, *, failed: bool) -> None:
        """A pass ended after `seconds`; `failed`: it raised before finishing."""


class _NoObserver:
    def leading(self, yes: bool) -> None:
        return None

    def passed(self, seconds: float, *, failed: bool) -> None:
        return None


class Reconciler:
    def __init__(
        self,
        repository: EndpointRepository,
        backend: Backend,
        interval_s: float = 0.5,
        *,
        endpoint_timeout_s: float = ENDPOINT_TIMEOUT_S,
        teardowns: Teardowns | None = None,
        routing_table: RoutingTable | None = None,
        loop_slice_s: float = SLICE_S,
        observer: PassObserver | None = None,
    ) -> None:
        self.repository = repository
        self.observer: PassObserver = observer or _NoObserver()
        self.loop_slice_s = loop_slice_s  # how long a pass holds the loop between turns
        self.backend = backend
        self.interval_s = interval_s
        self.endpoint_timeout_s = endpoint_timeout_s
        # Shared with the delete use case; one of our own is closed when we stop.
        self._owns_teardowns = teardowns is None
        self.teardowns = teardowns or Teardowns(repository, backend)
        self._garbage_collected = False
        self._known: dict[str, Endpoint] = {}  # the last pass's endpoints, by id
        self._started_at = datetime.now(UTC)
        # The inference routes' table: a status recorded here reaches it at once.
        self.routing_table = routing_table
        # The targets stored, by endpoint id: written again only on a change. Read from
        # the database at the first pass, so a new leader rewrites only those that differ
        # from its backend's view (not every endpoint's: at 10,000 endpoints, 10,000 row
        # writes and every gateway's table reading them all again).
        self._stored_targets: dict[str, str | None] = {}
        self._stored_targets_read = False
        # Statuses and targets: the pass's workers' writes, a transaction for many.
        self.writer = ObservationWriter(repository)

    async def run_forever(self) -> None:
        self.observer.leading(True)
        try:
            while True:
                started, failed = time.monotonic(), False
                try:
                    await self.reconcile_once()
                except Exception:  # one bad pass must not stop reconciliation for good
                    log.exception("reconcile pass failed")
                    failed = True
                self.observer.passed(time.monotonic() - started, failed=failed)
                await asyncio.sleep(self.interval_s)
        finally:
            self.observer.leading(False)
            await self.writer.close()
            if self._owns_teardowns:
                await self.teardowns.close()

    async def reconcile_once(self) -> None:
        if not self._stored_targets_read:
            self._stored_targets = await self.repository.stored_targets()
            self._stored_targets_read = True
        endpoints = await self.repository.list_all(self._known)
        self._known = {e.id: e for e in endpoints}
        for gone in self._stored_targets.keys() - self._known.keys():
            del self._stored_targets[gone]
        if not self._garbage_collected:
            try:
                await self.backend.collect_garbage({e.id for e in endpoints})
                self._garbage_collected = True
            except Exception:  # retried next pass; the endpoints still get reconciled
                log.exception("garbage collection of deleted endpoints failed")
        # A few workers share one queue of endpoints: a hanging endpoint holds up one worker
        # (until its timeout), never the pass, and a pass over many endpoints costs no task
        # per endpoint.
        queue = iter(endpoints)
        share = LoopShare(self.loop_slice_s)
        await asyncio.gather(*(self._work_through(queue, share) for _ in range(CONCURRENCY)))

    async def _work_through(self, queue: Iterator[Endpoint], share: LoopShare) -> None:
        for endpoint in queue:
            try:
                await self._isolated(endpoint)
            except Exception as exc:  # e.g. the database went away while recording a status
                log.error("endpoint %s: could not record its status: %r", endpoint.id, exc)
            # An endpoint that needs nothing written never suspends: without this a pass
            # over 10,000 of them held the event loop, and the inference routes served on
            # it, for 100-450 ms at a time (bench/gateway_scaling.py).
            await share.turn()

    async def _isolated(self, endpoint: Endpoint) -> None:
        """Reconcile one endpoint; whatever it raises or however long it hangs stays its own."""
        if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
            if self.routing_table is not None:  # a delete begun elsewhere: no more traffic
                self.routing_table.remove(endpoint.id)
            await self._finish_interrupted_delete(endpoint)
            return
        try:
            async with deadline(self.endpoint_timeout_s):  # no task, no timer per endpoint
                observation = await self._apply(endpoint)
        except TimeoutError:
            reason = (f"the {self.backend.name} backend did not answer within "
                      f"{self.endpoint_timeout_s:g}s for this endpoint; retrying")  # fmt: skip
            observation = _failed(endpoint, reason)
        except Exception as exc:
            log.exception("endpoint %s (%s) failed to reconcile", endpoint.name, endpoint.id)
            observation = _failed(endpoint, _unexpected(self.backend.name, exc))
        write_targets, targets = self._targets_to_store(endpoint)
        status_changed = _changed(endpoint, observation)
        if not (write_targets or status_changed):
            return
        recorded = await self.writer.write(
            Observed(
                endpoint.id,
                endpoint.generation,
                write_targets=write_targets,
                targets=targets,
                status=observation.status if status_changed else None,
                reason=observation.reason,
                available_workers=observation.available_workers,
                unavailable_workers=observation.unavailable_workers,
            )
        )
        if recorded.targets:
            self._stored_targets[endpoint.id] = targets
        if recorded.status and self.routing_table is not None:
            self.routing_table.observed(
                endpoint.id,
                endpoint.generation,
                observation.status,
                observation.reason,
                observation.available_workers,
                observation.unavailable_workers,
            )

    def _targets_to_store(self, endpoint: Endpoint) -> tuple[bool, str | None]:
        """Whether to store the endpoint's ready targets, and them (None when none is
        ready): only when they changed since this reconciler last stored them, and not
        while the backend has not looked yet (a new leader's first pass, before its
        watches listed)."""
        if not self.backend.knows_targets(endpoint):
            return False, None
        targets = encode_targets(self.backend.targets(endpoint))
        stored = self._stored_targets
        return not (endpoint.id in stored and stored[endpoint.id] == targets), targets

    async def _apply(self, endpoint: Endpoint) -> Observation:
        try:
            await self.backend.apply(endpoint)
            return await self.backend.observe(endpoint)
        except LaunchError as exc:
            return _failed(endpoint, exc.message)

    async def _finish_interrupted_delete(self, endpoint: Endpoint) -> None:
        """Finish a delete nobody carries out: at once if it began before this server
        started (a restart interrupted it), else once its row is STALE_DELETE old. The
        teardown goes on in the background (retried until it succeeds); this pass waits
        for it up to the endpoint timeout only."""
        if endpoint.id in self.teardowns or not self._interrupted(endpoint):
            return
        log.info("finishing the interrupted delete of endpoint %s (%s)", endpoint.name, endpoint.id)
        task = self.teardowns.start(endpoint)
        await asyncio.wait({task}, timeout=self.endpoint_timeout_s)

    def _interrupted(self, endpoint: Endpoint) -> bool:
        if endpoint.last_updated_at < self._started_at:
            return True
        return datetime.now(UTC) - endpoint.last_updated_at > STALE_DELETE


def _failed(endpoint: Endpoint, reason: str) -> Observation:
    return Observation(EndpointStatus.UPDATE_FAILED, reason, 0, endpoint.spec.min_workers)


def _unexpected(backend: str, exc: Exception) -> str:
    """One line a user can act on; the traceback goes to the server log only."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_REASON]
    return (
        f"the {backend} backend failed on this endpoint ({text}); check its fields "
        "(sizes, counts, engine_args) or ask the operator (details in the server log)"
    )


def _changed(endpoint: Endpoint, observation: Observation) -> bool:
    return (
        endpoint.status,
        endpoint.status_reason,
        endpoint.available_workers,
        endpoint.unavailable_workers,
    ) != (
        observation.status,
        observation.reason,
        observation.available_workers,
        observation.unavailable_workers,
    )
