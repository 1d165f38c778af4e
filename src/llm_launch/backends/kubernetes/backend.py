"""KubernetesBackend: runs endpoints as LeaderWorkerSets (multi-node) or Deployments.

Callers: the reconciler (`services/reconciler.py`: apply, observe, teardown,
collect_garbage), the endpoint service (teardown on delete, logs, `serving_point` and
`group_details` for GET and list) and the inference router (`targets`). Next hops:
`render.render_endpoint` (spec -> manifests), `apply` (server-side apply, prune, delete and
wait), `watch` (informers whose caches `observe` and `targets` read), `status` (cache ->
Observation), `details` (cache -> per-group detail), `client.KubeClient` (pod logs).

The reconciler calls `apply` and `observe` every pass (about twice a second per endpoint):
`apply` reaches the API server only when the endpoint's generation changed, when the
watch shows its workload missing, or every `resync_s` (repairing drift); `observe` reads
the informers' caches and fetches a container's log only once per crash.

Connects lazily (the first call made in the event loop): from an explicit kubeconfig,
else `$KUBECONFIG`, else the in-cluster service account, else `~/.kube/config`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from llm_launch.backends.base import Observation, ServingPoint
from llm_launch.backends.kubernetes import apply as applier
from llm_launch.backends.kubernetes.client import (
    DEPLOYMENT,
    EVENT,
    LEADER_WORKER_SET,
    POD,
    KubeClient,
)
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.crd_check import check_lws_crd
from llm_launch.backends.kubernetes.details import group_details
from llm_launch.backends.kubernetes.errors import ObjectNotFound
from llm_launch.backends.kubernetes.events import EventIndex, related_uids
from llm_launch.backends.kubernetes.history import RecreationTracker, Termination
from llm_launch.backends.kubernetes.leader import LeaderElector, LeaseSettings
from llm_launch.backends.kubernetes.render import check_supported, render_endpoint
from llm_launch.backends.kubernetes.render_names import (
    LABEL_ENDPOINT_ID,
    MANAGED_SELECTOR,
    object_name,
    service_url,
)
from llm_launch.backends.kubernetes.retry import ApplyLedger, RetryTiming
from llm_launch.backends.kubernetes.status import (
    UNSCHEDULABLE_TIMEOUT_S,
    Evidence,
    Workload,
    crashing_containers,
    observe,
    pod_views,
    ready_groups,
)
from llm_launch.backends.kubernetes.watch import Informer, Listener, WatchTiming
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, InvalidRequest, LaunchError, NotFound
from llm_launch.domain.groups import GroupDetail
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus
from llm_launch.engines.common import ENGINE_CONTAINER, FORWARDER_CONTAINER

log = logging.getLogger("llm_launch.kubernetes")

Object = dict[str, Any]
Render = Callable[[Endpoint], list[Object]]
CrashKey = tuple[str, str, int]


@dataclass(frozen=True)
class KubernetesTiming:
    delete_timeout_s: float = 600.0  # teardown gives up (DeletionTimeout) after this
    delete_poll_s: float = 1.0
    sync_wait_s: float = 5.0  # observe waits this long for a watch's first list
    resync_s: float = 600.0  # re-apply an unchanged endpoint this often
    missing_grace_s: float = 10.0  # re-apply when the workload is still unseen after this
    unschedulable_timeout_s: float = UNSCHEDULABLE_TIMEOUT_S  # then UPDATE_FAILED
    apply_timeout_s: float = 20.0  # one apply's requests; past it, a transient failure
    retry: RetryTiming = field(default_factory=RetryTiming)  # backoff of failed applies
    crash_log_lines: int = 5
    watch: WatchTiming = field(default_factory=WatchTiming)


class KubernetesBackend:
    name = "kubernetes"

    def __init__(
        self,
        config: KubernetesConfig,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        client: KubeClient | None = None,
        render: Render | None = None,
        timing: KubernetesTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.namespace = config.namespace
        self._render: Render = render or (lambda endpoint: render_endpoint(endpoint, config))
        self._kubeconfig = kubeconfig
        self._context = context
        self._client = client
        self._timing = timing or KubernetesTiming()
        self._clock = clock
        self._start_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._applied: dict[str, tuple[int, float]] = {}  # endpoint id -> generation, when
        self._tombstones: set[str] = set()
        self._crash_logs: dict[str, dict[CrashKey, str]] = {}
        self._recreations = RecreationTracker(on_termination=self._capture_log)
        self._captures: dict[CrashKey, asyncio.Task[None]] = {}
        self._ledger = ApplyLedger(self._timing.retry, clock)
        self._informers: dict[str, Informer] = {}
        self._events = EventIndex()

    async def start(self) -> None:
        """Connect and check the cluster's LeaderWorkerSet CRD (`crd_check.py`): raises
        LwsCrdUnsupported, which stops the server at start, when it is missing, does not
        serve v1 or lacks a field we render."""
        await check_lws_crd(await self._connected(), self.config)

    # -- the Backend contract ----------------------------------------------------------
    async def apply(self, endpoint: Endpoint) -> None:
        """Apply when needed (see `_needs_apply`). A failed apply is not raised: it is
        recorded (`retry.ApplyLedger`) and `observe` reports it beside what it sees, so a
        failing API server never hides the pods' real state."""
        if endpoint.id in self._tombstones:
            return
        client = await self._connected()
        async with self._lock(endpoint.id):
            if endpoint.id in self._tombstones or not self._needs_apply(endpoint):
                return
            objects = self._render(endpoint)
            try:
                # Well within the reconciler's per-endpoint timeout, so that a hanging API
                # server is a transient apply failure here, not a failed endpoint there.
                async with asyncio.timeout(self._timing.apply_timeout_s):
                    await applier.apply_objects(client, self.namespace, endpoint.id, objects)
            except (LaunchError, TimeoutError) as exc:
                failure = self._ledger.failed(endpoint.id, endpoint.generation, exc)
                kind = "transient" if failure.transient else "permanent"
                log.warning(
                    "applying %s generation %d failed (%s, attempt %d): %s",
                    endpoint.name, endpoint.generation, kind, failure.attempts, failure.message,
                )  # fmt: skip
                return
            self._ledger.succeeded(endpoint.id)
            self._applied[endpoint.id] = (endpoint.generation, self._clock())
            log.info("applied %s generation %d", endpoint.name, endpoint.generation)

    async def observe(self, endpoint: Endpoint) -> Observation:
        await self._connected()
        workload = self._workload(endpoint)
        for informer in (self._informer(workload.kind), self._informers["Pod"]):
            if not await informer.wait_synced(self._timing.sync_wait_s):
                why = f": {informer.last_error}" if informer.last_error else ""
                return Observation(
                    EndpointStatus.UPDATE_IN_PROGRESS,
                    f"waiting for the first list of {informer.resource.kind} objects{why}",
                    0,
                    endpoint.spec.min_workers,
                )
        workload = self._workload(endpoint)
        pods = self._informers["Pod"].cache.for_endpoint(endpoint.id)
        logs = await self._crash_logs_of(endpoint.id, pods)
        evidence = Evidence(
            self._events.about(related_uids(workload.obj, pods)),
            unschedulable_timeout_s=self._timing.unschedulable_timeout_s,
        )
        recreations = self._recreations.recreations(endpoint.id)
        seen = observe(workload, pods, logs, recreations, evidence)
        return self._with_apply_failure(endpoint, self._flag_stale_watches(seen, workload.kind))

    def _with_apply_failure(self, endpoint: Endpoint, seen: Observation) -> Observation:
        """What was observed, plus why this generation is not (fully) applied. Worker
        counts always come from the pods: a failed apply does not stop running groups."""
        failure = self._ledger.failure(endpoint.id, endpoint.generation)
        if failure is None:
            return seen
        if failure.transient:
            note = (
                f"the Kubernetes API server cannot be reached or is failing ({failure.message}); "
                f"applying generation {endpoint.generation} is retried with backoff "
                f"({failure.attempts} failed attempts so far); the status is what was last observed"
            )
            return dataclasses.replace(
                seen, reason=f"{seen.reason}; {note}" if seen.reason else note
            )
        reason = (
            f"the Kubernetes API refused generation {endpoint.generation}: {failure.message}. "
            "It is not applied again until the endpoint changes"
        )
        if seen.reason:
            reason += f" (meanwhile: {seen.reason})"
        return dataclasses.replace(seen, status=EndpointStatus.UPDATE_FAILED, reason=reason)

    def _flag_stale_watches(self, seen: Observation, kind: str) -> Observation:
        """Say so when a watch is failing: the status is then what was last seen."""
        failing = [
            f"{informer.resource.kind}: {informer.last_error}"
            for informer in (self._informer(kind), self._informers["Pod"])
            if informer.last_error
        ]
        if not failing:
            return seen
        note = f"watch failing, status may be stale ({'; '.join(failing)})"
        reason = f"{seen.reason}; {note}" if seen.reason else note
        return dataclasses.replace(seen, reason=reason)

    async def teardown(self, endpoint: Endpoint) -> None:
        self._tombstones.add(endpoint.id)
        client = await self._connected()
        async with self._lock(endpoint.id):
            await applier.delete_endpoint(
                client,
                self.namespace,
                endpoint.id,
                self._timing.delete_timeout_s,
                self._timing.delete_poll_s,
            )
        self._forget(endpoint.id)

    async def collect_garbage(self, live_endpoint_ids: set[str]) -> None:
        """Best effort: a failure is logged, not raised, so that it cannot hold up the
        reconciliation of the endpoints that do exist."""
        try:
            client = await self._connected()
            deleted = await applier.collect_garbage(
                client, self.namespace, live_endpoint_ids, self.config.control_plane_id
            )
        except LaunchError as exc:
            log.warning("garbage collection skipped: %s", exc.message)
            return
        if deleted:
            log.info("deleted objects of endpoints that no longer exist: %s", ", ".join(deleted))
        for endpoint_id in set(self._applied) - live_endpoint_ids:
            self._forget(endpoint_id)

    def check(self, spec: EndpointSpec) -> list[FieldError]:
        return check_supported(spec, self.config)

    def knows_targets(self, endpoint: Endpoint) -> bool:
        """Once the watches of the endpoint's workload kind and of pods have listed."""
        kind = self._workload(endpoint).kind
        return all(
            kind_ in self._informers and self._informers[kind_].synced.is_set()
            for kind_ in (kind, "Pod")
        )

    def targets(self, endpoint: Endpoint) -> list[str]:
        """The endpoint's Service, once at least one group is ready (the Service itself
        balances over the ready leaders)."""
        if "Pod" not in self._informers:
            return []
        workload = self._workload(endpoint)
        pods = self._informers["Pod"].cache.for_endpoint(endpoint.id)
        if workload.obj is None or ready_groups(workload, pods) == 0:
            return []
        return [
            service_url(endpoint.owner, endpoint.spec, self.namespace, self.config.service_port)
        ]

    def serving_point(self, endpoint: Endpoint) -> ServingPoint:
        """The endpoint's Service (the leader Service of a multi-node one), whose name is
        fixed whatever runs behind it, and its LeaderWorkerSet's or Deployment's name."""
        owner, spec = endpoint.owner, endpoint.spec
        return ServingPoint(
            destination=service_url(owner, spec, self.namespace, self.config.service_port),
            deployment_name=object_name(owner, spec),
            concurrent_requests_per_worker=self.config.plan_options.forwarder_max_concurrency,
        )

    def group_details(self, endpoint: Endpoint) -> list[GroupDetail]:
        """Each group's pods as the watch cache holds them (`details.py`); none before the
        watches have started."""
        if "Pod" not in self._informers:
            return []
        pods = self._informers["Pod"].cache.for_endpoint(endpoint.id)
        recreations = self._recreations.recreations(endpoint.id)
        return group_details(self._workload(endpoint), pods, recreations)

    async def logs(self, endpoint: Endpoint, group: int, process: str, tail: int) -> str:
        """`process` is `rank-N` (container `engine` of rank N) or `forwarder` (the
        leader's forwarder). Leader pod `<lws>-<group>`, workers `<lws>-<group>-<rank>`;
        a Deployment's pods are its groups, by age."""
        client = await self._connected()
        pod, container = self._log_source(endpoint, group, process)
        try:
            return await client.read_log(self.namespace, pod, container, tail)
        except ObjectNotFound as exc:
            raise _no_log(endpoint, group, process, exc) from exc

    async def follow_logs(
        self, endpoint: Endpoint, group: int, process: str, tail: int
    ) -> AsyncIterator[bytes]:
        """The pod log API's `follow=true`, from the same pod and container as `logs`: it
        ends when the container stops (a recreated group's pods are new ones)."""
        client = await self._connected()
        pod, container = self._log_source(endpoint, group, process)
        try:
            return await client.follow_log(self.namespace, pod, container, tail)
        except ObjectNotFound as exc:
            raise _no_log(endpoint, group, process, exc) from exc

    def _log_source(self, endpoint: Endpoint, group: int, process: str) -> tuple[str, str]:
        """The pod and container whose log `process` of `group` is."""
        rank, container = _parse_process(process)
        return self._pod_name(endpoint, group, rank), container

    async def elector(self, lease: LeaseSettings) -> LeaderElector:
        """A leader-election candidate (`leader.py`) on this backend's connection. Connecting
        starts the watches too: a replica that does not reconcile still sees which groups
        are ready (`targets`) and routes inference to them. Until the API server can be
        reached, tries again every retry period."""
        while True:
            try:
                return LeaderElector(await self._connected(), lease)
            except LaunchError as exc:
                log.warning("cannot connect for leader election yet: %s", exc.message)
                await asyncio.sleep(lease.retry_period_s)

    async def close(self) -> None:
        """Stop the watches and release the connections; the workloads keep running."""
        for task in list(self._captures.values()):
            task.cancel()
        for informer in self._informers.values():
            await informer.stop()
        self._informers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- helpers -------------------------------------------------------------------------
    async def _connected(self) -> KubeClient:
        async with self._start_lock:
            if self._client is None:
                self._client = await KubeClient.connect(self._kubeconfig, self._context)
            if not self._informers:
                self._start_informers(self._client)
            return self._client

    def _start_informers(self, client: KubeClient) -> None:
        for resource in (LEADER_WORKER_SET, DEPLOYMENT, POD):
            listeners = [self._recreations.record] if resource is POD else []
            informer = Informer(
                client, resource, self.namespace, MANAGED_SELECTOR, listeners, self._timing.watch
            )
            self._informers[resource.kind] = informer
            informer.start()
        # Events carry none of our labels: watch the namespace's, matched to endpoints by
        # the uid of the object they are about (events.py). Nobody waits for this watch:
        # without it (RBAC, say) reasons just quote no events.
        hear: list[Listener] = [self._recreations.record_event]
        events = Informer(
            client, EVENT, self.namespace, "", hear, self._timing.watch, cache=self._events
        )
        self._informers[EVENT.kind] = events
        events.start()

    def _informer(self, kind: str) -> Informer:
        return self._informers[kind]

    def _workload(self, endpoint: Endpoint) -> Workload:
        kind = LEADER_WORKER_SET.kind if endpoint.spec.is_multinode else DEPLOYMENT.kind
        name = object_name(endpoint.owner, endpoint.spec)
        informer = self._informers.get(kind)
        obj = informer.cache.get(name) if informer is not None else None
        if (
            obj is not None
            and (obj["metadata"].get("labels") or {}).get(LABEL_ENDPOINT_ID) != endpoint.id
        ):
            obj = None  # an earlier endpoint's object of the same name, on its way out
        return Workload(kind, name, obj, endpoint.generation, endpoint.spec.min_workers)

    def _needs_apply(self, endpoint: Endpoint) -> bool:
        """A new generation at once; after a failure, once its backoff is over; an applied
        generation again every `resync_s`, or when the watch shows the workload missing."""
        if not self._ledger.due(endpoint.id, endpoint.generation):
            return False
        applied = self._applied.get(endpoint.id)
        if applied is None or applied[0] != endpoint.generation:
            return True
        age = self._clock() - applied[1]
        if age >= self._timing.resync_s:
            return True
        informer = self._informers[self._workload(endpoint).kind]
        missing = informer.synced.is_set() and self._workload(endpoint).obj is None
        return missing and age >= self._timing.missing_grace_s

    async def _crash_logs_of(self, endpoint_id: str, pods: list[Object]) -> dict[CrashKey, str]:
        """The last lines of each crash-looping container's previous run, fetched once per
        crash (the key holds the restart count)."""
        known = self._crash_logs.get(endpoint_id, {})
        fresh: dict[CrashKey, str] = {}
        for crashing in crashing_containers(pods):
            if crashing.key in known:
                fresh[crashing.key] = known[crashing.key]
                continue
            capture = self._captures.get(crashing.key)
            if capture is not None:  # the watch saw this crash: its log is on its way
                await asyncio.wait([capture])
            captured = self._recreations.log_of(crashing.key)
            if captured is not None:
                fresh[crashing.key] = captured
                continue
            fresh[crashing.key] = await self._read_crash_log(crashing.pod, crashing.container)
        self._crash_logs[endpoint_id] = fresh
        return fresh

    def _capture_log(self, termination: Termination) -> None:
        """A container just failed (the pod watch saw it): fetch its last log lines now,
        before the LWS controller deletes its group and the log with it."""
        if self._client is None:
            return
        key = termination.key
        task = asyncio.create_task(self._fetch_termination_log(termination))
        self._captures[key] = task
        task.add_done_callback(lambda _: self._captures.pop(key, None))

    async def _fetch_termination_log(self, termination: Termination) -> None:
        assert self._client is not None
        lines = self._timing.crash_log_lines
        pod, container = termination.pod, termination.container
        try:
            text = await self._client.read_log(
                self.namespace, pod, container, lines, termination.previous
            )
        except LaunchError as exc:  # the pod may be gone already
            log.info("no log of %s/%s after its failure: %s", pod, container, exc.message)
            return
        if text.strip():
            self._recreations.attach_log(termination.key, text)

    async def _read_crash_log(self, pod: str, container: str) -> str:
        assert self._client is not None
        lines = self._timing.crash_log_lines
        try:
            return await self._client.read_log(self.namespace, pod, container, lines, True)
        except LaunchError:
            pass  # no previous run kept (yet): the current one may have written something
        try:
            return await self._client.read_log(self.namespace, pod, container, lines)
        except LaunchError as exc:
            return f"(log unavailable: {exc.message})"

    def _pod_name(self, endpoint: Endpoint, group: int, rank: int) -> str:
        workload = self._workload(endpoint)
        if workload.kind == LEADER_WORKER_SET.kind:
            return f"{workload.name}-{group}" + (f"-{rank}" if rank else "")
        if rank != 0:
            raise NotFound(f"endpoint {endpoint.name!r} runs on one node: it has only rank-0")
        pods = self._informers["Pod"].cache.for_endpoint(endpoint.id)
        views = [v for v in pod_views(workload, pods) if v.group == group]
        if not views:
            raise NotFound(f"endpoint {endpoint.name!r} has no group {group} running")
        return views[0].name

    def _lock(self, endpoint_id: str) -> asyncio.Lock:
        return self._locks.setdefault(endpoint_id, asyncio.Lock())

    def _forget(self, endpoint_id: str) -> None:
        self._applied.pop(endpoint_id, None)
        self._ledger.forget(endpoint_id)
        self._crash_logs.pop(endpoint_id, None)
        self._locks.pop(endpoint_id, None)
        self._recreations.forget(endpoint_id)


def _parse_process(process: str) -> tuple[int, str]:
    if process == "forwarder":
        return 0, FORWARDER_CONTAINER
    rank = process.removeprefix("rank-")
    if process.startswith("rank-") and rank.isdigit():
        return int(rank), ENGINE_CONTAINER
    raise InvalidRequest([FieldError("process", "must be 'forwarder' or 'rank-<N>'")])


def _no_log(endpoint: Endpoint, group: int, process: str, exc: ObjectNotFound) -> NotFound:
    return NotFound(
        f"no log for group {group}, {process} of endpoint {endpoint.name!r}: "
        f"{exc.message} (is the group running?)"
    )
