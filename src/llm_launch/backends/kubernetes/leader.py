"""Leader election over a `coordination.k8s.io/v1` Lease: which control-plane replica
reconciles.

Caller: the API server's lifespan (`api/app.py`), which runs the reconciler inside
`LeaderElector.run` when the backend is Kubernetes; every replica serves the API and the
inference routes whatever the election says. Next hop: `client.KubeClient` (get, create
and update of one Lease).

The protocol is client-go's `k8s.io/client-go/tools/leaderelection` (leaderelection.go:
`tryAcquireOrRenew`, `renew`, `release`) on the Lease fields the API reference describes
(https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/ and
https://kubernetes.io/docs/concepts/architecture/leases/):

- A candidate reads the Lease. It may take it when nobody holds it (`holderIdentity`
  empty), or when the record has not changed for `leaseDurationSeconds` as measured by
  the candidate's own clock since it last saw the record change ("measured against the
  time of last observed renewTime": no clock is compared across machines).
- Taking or renewing is an update carrying the `resourceVersion` read, so of two
  candidates at most one succeeds (the other gets 409 Conflict, optimistic concurrency);
  creating a missing Lease is a create, where the loser gets 409 AlreadyExists.
- The holder renews every `retry_period_s`; when it has not managed to for
  `renew_deadline_s` (shorter than the lease duration) it stops leading before anyone
  else may take over, and campaigns again.
- On a clean stop the holder gives the Lease up (holder empty, duration 1 s, as client-go's
  `ReleaseOnCancel`), so a rolling update hands over at once instead of after a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_launch.backends.kubernetes.client import LEASE, KubeClient
from llm_launch.backends.kubernetes.errors import ObjectConflict, ObjectNotFound
from llm_launch.domain.errors import LaunchError

log = logging.getLogger("llm_launch.leader")

Object = dict[str, Any]
JITTER = 1.2  # client-go's JitterFactor: waits between tries are retry_period x [1, 2.2)


def default_identity() -> str:
    """`POD_NAME` (the Deployment sets it from the downward API), else host and pid: unique
    per process, as every candidate must have its own identity."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


@dataclass(frozen=True)
class LeaseSettings:
    """client-go's defaults (15 s / 10 s / 2 s, as kube-controller-manager's
    --leader-elect-* flags)."""

    namespace: str
    name: str = "llm-launch-default"
    identity: str = field(default_factory=default_identity)
    duration_s: int = 15  # leaseDurationSeconds is an int32 in the Lease
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def problems(self) -> list[str]:
        """What client-go's NewLeaderElector also refuses: a holder must give up (renew
        deadline) before others may take over (duration), and retry more than once in it."""
        found = []
        if self.duration_s <= self.renew_deadline_s:
            found.append("the lease duration must be longer than the renew deadline")
        if self.renew_deadline_s <= JITTER * self.retry_period_s:
            found.append(f"the renew deadline must be longer than {JITTER} x the retry period")
        if self.retry_period_s <= 0:
            found.append("the retry period must be positive")
        if not self.identity:
            found.append("the identity must not be empty")
        return found


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API writes it (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate. `run(lead)` runs `lead` only while this candidate holds the Lease."""

    def __init__(
        self,
        client: KubeClient,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._client = client
        self._clock = clock
        self._wall = wall
        self._observed: Object | None = None  # the Lease's spec as last read or written
        self._observed_at = 0.0  # when (our clock) that record last changed
        self._lease: Object | None = None  # the last Lease object read or written
        self.is_leader = False
        self.holder = ""  # who holds it, as last seen

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign, lead while the Lease is ours, campaign again when it is lost; never
        returns. Cancelled: stops `lead`, then gives the Lease up if it holds it."""
        try:
            while True:
                await self._acquire()
                log.info("%s leads (lease %s)", self.settings.identity, self.settings.name)
                await self._lead(lead)
        finally:
            if self.is_leader:
                await asyncio.shield(self._release())

    async def _acquire(self) -> None:
        while True:
            if await self.try_acquire_or_renew():
                return
            await asyncio.sleep(self.settings.retry_period_s * random.uniform(1, 1 + JITTER))

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(lead())
        try:
            await self._renew_while(task)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("leading failed: %r; campaigning again", task.exception())
            await asyncio.sleep(self.settings.retry_period_s)  # no hot loop of failures

    async def _renew_while(self, task: asyncio.Future[None]) -> None:
        """Renew every retry period until `task` ends or renewing fails for the deadline."""
        renewed = self._clock()
        while not task.done():
            await asyncio.wait([task], timeout=self.settings.retry_period_s)
            if task.done():
                return
            left = self.settings.renew_deadline_s - (self._clock() - renewed)
            ok = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(left, 0.0)):
                    ok = await self.try_acquire_or_renew()
            if ok:
                renewed = self._clock()
            elif self._clock() - renewed >= self.settings.renew_deadline_s or not self.is_leader:
                log.warning(
                    "%s lost the lease %s (holder now %r); stops reconciling",
                    self.settings.identity, self.settings.name, self.holder,
                )  # fmt: skip
                self.is_leader = False
                return

    async def try_acquire_or_renew(self) -> bool:
        """One try (client-go's tryAcquireOrRenew): True when this candidate holds the Lease
        after it. API failures are a failed try, never raised."""
        now = self._clock()
        try:
            lease = await self._client.get(LEASE, self.settings.namespace, self.settings.name)
        except ObjectNotFound:
            return await self._create(now)
        except LaunchError as exc:
            log.warning("reading the lease %s failed: %s", self.settings.name, exc.message)
            return False
        spec: Object = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        self.holder = str(spec.get("holderIdentity") or "")
        duration = int(spec.get("leaseDurationSeconds") or self.settings.duration_s)
        mine = self.holder == self.settings.identity
        if self.holder and not mine and self._observed_at + duration > now:
            self.is_leader = False
            return False
        lease["spec"] = self._record(spec if mine else None)
        try:
            written = await self._client.replace(LEASE, self.settings.namespace, lease)
        except ObjectConflict:  # another candidate wrote first: read again next try
            return False
        except LaunchError as exc:
            log.warning("updating the lease %s failed: %s", self.settings.name, exc.message)
            return False
        self._took(written, now)
        return True

    async def _create(self, now: float) -> bool:
        lease = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {
                "name": self.settings.name,
                "namespace": self.settings.namespace,
                "labels": {"app.kubernetes.io/name": "llm-launch"},
            },
            "spec": self._record(None),
        }
        try:
            written = await self._client.create(LEASE, self.settings.namespace, lease)
        except LaunchError as exc:  # AlreadyExists: another candidate created it first
            log.info("creating the lease %s failed: %s", self.settings.name, exc.message)
            return False
        self._took(written, now)
        return True

    def _record(self, held: Object | None) -> Object:
        """Our record; `held` is the current one when we already hold the Lease (its
        acquireTime and transitions stay), None when we take it over."""
        stamp = micro_time(self._wall())
        spec: Object = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": self.settings.duration_s,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        }
        if held is not None:
            spec["acquireTime"] = held.get("acquireTime") or stamp
            spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0)
        elif self._observed is not None:
            spec["leaseTransitions"] = int(self._observed.get("leaseTransitions") or 0) + 1
        return spec

    def _took(self, written: Object, now: float) -> None:
        self._lease = written
        self._observed, self._observed_at = dict(written.get("spec") or {}), now
        self.holder = self.settings.identity
        self.is_leader = True

    async def _release(self) -> None:
        """Give the Lease up (client-go's release with ReleaseOnCancel): holder empty, a
        duration of 1 s, so the next candidate takes it at its next try. Best effort and
        bounded: a stopping replica must not hang on an unreachable API server."""
        self.is_leader = False
        if self._lease is None:
            return
        lease = dict(self._lease)
        stamp = micro_time(self._wall())
        lease["spec"] = {
            **(self._lease.get("spec") or {}),
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": stamp,
            "renewTime": stamp,
        }
        try:
            async with asyncio.timeout(self.settings.retry_period_s):
                await self._client.replace(LEASE, self.settings.namespace, lease)
            log.info("%s released the lease %s", self.settings.identity, self.settings.name)
        except (LaunchError, TimeoutError) as exc:
            log.warning("releasing the lease %s failed: %r", self.settings.name, exc)
