"""Teardowns: the deletes this server process carries out, in the background.

DELETE (services/endpoints.py) marks the endpoint DELETE_IN_PROGRESS, which hides it from
its owner's GET, list and inference routes at once, and hands the backend's teardown to
this module; the HTTP call does not wait for it (a Kubernetes foreground deletion can take
minutes). Each teardown is retried until it succeeds, with jittered, capped exponential
backoff, every failure logged for the operator and kept in the row's status_reason for the
owner; the row (and with it the name and the quota it holds) goes only once the backend
says everything is gone. The reconciler shares this object: it starts here the deletes a
crash, a restart or another replica left unfinished, and never a second teardown of one
already running here.

While a teardown runs, its row's `last_updated_at` is refreshed every `heartbeat_s`, so
the reconcilers of other replicas (which take over a delete not refreshed for
STALE_DELETE, services/reconciler.py) leave a live teardown alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from llm_launch.backends.base import Backend
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import LaunchError
from llm_launch.store.repository import EndpointRepository

log = logging.getLogger("llm_launch.teardowns")

HEARTBEAT_S = 20.0  # well under the reconciler's STALE_DELETE (60 s)
SHUTDOWN_GRACE_S = 10.0  # a stopping server lets teardowns in progress end this long
MAX_REASON = 300  # characters of a teardown error kept in status_reason
_JITTER = random.Random()  # not for secrets: only spreads retries out


@dataclass(frozen=True)
class Backoff:
    """Delays between teardown attempts: doubling from `base_s`, capped at `cap_s`, each
    drawn from its upper half, so the retries of many endpoints do not fall in step.
    The cap stays under the reconciler's STALE_DELETE: a waiting retry is still "alive"."""

    base_s: float = 1.0
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1 for the first)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 32))
        return ceiling / 2 + (rng or _JITTER).uniform(0, ceiling / 2)


class Teardowns:
    """Background teardowns by endpoint id. Used from one event loop only."""

    def __init__(
        self,
        repository: EndpointRepository,
        backend: Backend | None,
        *,
        backoff: Backoff | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.repository = repository
        self.backend = backend
        self.backoff = backoff or Backoff()
        self.heartbeat_s = heartbeat_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._tasks

    def start(self, endpoint: Endpoint, operation_id: str | None = None) -> asyncio.Task[None]:
        """Tear `endpoint` down in the background until it is gone, then remove its row
        (closing `operation_id`); the task already doing so if one is."""
        running = self._tasks.get(endpoint.id)
        if running is not None:
            return running
        task = asyncio.create_task(
            self._until_gone(endpoint, operation_id), name=f"teardown-{endpoint.id}"
        )
        self._tasks[endpoint.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(endpoint.id, None))
        return task

    async def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Give the teardowns in progress `grace_s` to end, then stop them; their rows stay
        DELETE_IN_PROGRESS, and the next server's reconciler (or another replica's)
        finishes them."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _until_gone(self, endpoint: Endpoint, operation_id: str | None) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._attempt(endpoint)
                await self.repository.remove(endpoint.id, operation_id)
                log.info("endpoint %s (%s) deleted", endpoint.name, endpoint.id)
                return
            except Exception as exc:  # any failure is retried; the row keeps the quota
                delay = self.backoff.delay(attempt)
                why = _why(exc)
                log.warning(
                    "teardown of endpoint %s (%s, owner %s) failed (attempt %d), retrying in "
                    "%.1fs: %s",
                    endpoint.name, endpoint.id, endpoint.owner, attempt, delay, why,
                    exc_info=not isinstance(exc, LaunchError),
                )  # fmt: skip
                await self._note(
                    endpoint,
                    f"teardown failed {attempt} time(s), retrying in {delay:.0f}s: {why}",
                )
                await asyncio.sleep(delay)

    async def _attempt(self, endpoint: Endpoint) -> None:
        """One teardown, refreshing the row every `heartbeat_s` while it runs."""
        if self.backend is None:
            return
        teardown = asyncio.ensure_future(self.backend.teardown(endpoint))
        try:
            while True:
                done, _ = await asyncio.wait({teardown}, timeout=self.heartbeat_s)
                if done:
                    teardown.result()
                    return
                await self._note(endpoint, None)
        finally:
            teardown.cancel()

    async def _note(self, endpoint: Endpoint, reason: str | None) -> None:
        try:
            await self.repository.touch_deleting(endpoint.id, reason)
        except Exception as exc:  # the database is away too; the loop goes on regardless
            log.warning("endpoint %s: could not record its teardown: %r", endpoint.id, exc)


def _why(exc: Exception) -> str:
    text = exc.message if isinstance(exc, LaunchError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:MAX_REASON]
