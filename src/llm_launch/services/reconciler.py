"""The reconciler: drives every endpoint towards its spec through the backend.

Started by the API server (api/app.py) as one background task. Each pass lists the
endpoints, asks the backend to apply each one (idempotent), observes it, and records
status, reason and worker counts when they change. It also finishes deletes that a
crash interrupted, and on its first pass lets the backend stop leftovers of endpoints
that no longer exist.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from llm_launch.backends.base import Backend, Observation
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import LaunchError
from llm_launch.domain.status import EndpointStatus
from llm_launch.store.repository import EndpointRepository

log = logging.getLogger("llm_launch.reconciler")

# A delete still DELETE_IN_PROGRESS after this long was interrupted (the server died).
STALE_DELETE = timedelta(seconds=60)


class Reconciler:
    def __init__(
        self, repository: EndpointRepository, backend: Backend, interval_s: float = 0.5
    ) -> None:
        self.repository = repository
        self.backend = backend
        self.interval_s = interval_s
        self._first_pass = True
        self._known: dict[str, Endpoint] = {}  # the last pass's endpoints, by id

    async def run_forever(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except Exception:  # one bad pass must not stop reconciliation for good
                log.exception("reconcile pass failed")
            await asyncio.sleep(self.interval_s)

    async def reconcile_once(self) -> None:
        endpoints = await self.repository.list_all(self._known)
        self._known = {e.id: e for e in endpoints}
        if self._first_pass:
            await self.backend.collect_garbage({e.id for e in endpoints})
            self._first_pass = False
        for endpoint in endpoints:
            await self._reconcile(endpoint)

    async def _reconcile(self, endpoint: Endpoint) -> None:
        if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
            if datetime.now(UTC) - endpoint.last_updated_at > STALE_DELETE:
                await self.backend.teardown(endpoint)
                await self.repository.remove(endpoint.id)
            return
        try:
            await self.backend.apply(endpoint)
            observation = await self.backend.observe(endpoint)
        except LaunchError as exc:
            observation = Observation(
                EndpointStatus.UPDATE_FAILED, exc.message, 0, endpoint.spec.min_workers
            )
        if _changed(endpoint, observation):
            await self.repository.set_status(
                endpoint.id,
                observation.status,
                observation.reason,
                generation=endpoint.generation,
                available_workers=observation.available_workers,
                unavailable_workers=observation.unavailable_workers,
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
