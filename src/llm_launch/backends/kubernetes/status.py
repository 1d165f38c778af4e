"""Observed status of one endpoint, from its workload object and its pods. Pure functions.

Caller: `backend.KubernetesBackend.observe` (with objects from the watch cache, the crash
logs it fetched for `crashing_containers`, and the group recreations of `history`); also
`targets` through `ready_groups`. Next hop: none; the backend hands the Observation to the
reconciler, which records it.

READY: the controller has seen our generation, every wanted group is updated, and the
wanted number of groups are ready (the LeaderWorkerSet/Deployment says so, and so do the
pods: in each group the leader, whose readiness probe is a real generation, and every
worker). UPDATE_FAILED: something that will not fix itself (an image that cannot be
pulled, a crash loop, a pod no node can take, a group recreated again and again); the
reason says what to change. Otherwise UPDATE_IN_PROGRESS, with what it waits for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_launch.backends.base import Observation
from llm_launch.backends.kubernetes.events import (
    NO_SCALE_UP,
    PROBLEMS,
    SCALE_UP,
    EventView,
    latest,
)
from llm_launch.backends.kubernetes.history import (
    GROUP_INDEX_LABEL,
    REVISION_LABELS,
    WORKER_INDEX_LABEL,
    Recreations,
    describe_exit,
)
from llm_launch.backends.kubernetes.render_names import ANNOTATION_GENERATION
from llm_launch.domain.status import EndpointStatus

Object = dict[str, Any]
RECREATION_LIMIT = 3  # recreations of one group within the tracker's window
UNSCHEDULABLE_TIMEOUT_S = 900.0  # a pod unschedulable this long fails the endpoint
PULL_FAILURES = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})
START_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})
_INSUFFICIENT = re.compile(r"Insufficient ([\w./-]*\w)")


@dataclass(frozen=True)
class PodView:
    """One live (not terminating) pod, placed in its group."""

    name: str
    group: int
    rank: int
    pod: Object

    @property
    def ready(self) -> bool:
        return _condition(self.pod, "Ready") == "True"

    @property
    def role(self) -> str:
        return "leader" if self.rank == 0 else f"worker {self.rank}"


@dataclass(frozen=True)
class CrashingContainer:
    """A container in CrashLoopBackOff, whose last log lines the reason should quote."""

    pod: str
    container: str
    key: tuple[str, str, int]  # pod uid, container, restart count: one crash


@dataclass(frozen=True)
class Workload:
    """What `observe` needs besides the pods."""

    kind: str  # LeaderWorkerSet or Deployment
    name: str
    obj: Object | None  # None: not created (or not seen by the watch) yet
    generation: int  # the endpoint's generation
    default_replicas: int  # wanted groups when the object does not say (HPA-owned)


@dataclass(frozen=True)
class Evidence:
    """What `observe` reads besides the workload and its pods."""

    events: Sequence[EventView] = ()  # about the endpoint's objects, oldest first
    now: datetime | None = None  # None: the current time
    unschedulable_timeout_s: float = UNSCHEDULABLE_TIMEOUT_S


def observe(
    workload: Workload,
    pods: Sequence[Object],
    crash_logs: Mapping[tuple[str, str, int], str],
    recreations: Mapping[int, Recreations],
    evidence: Evidence | None = None,
) -> Observation:
    """The endpoint's Observation (see the module docstring)."""
    evidence = evidence or Evidence()
    wanted = wanted_groups(workload)
    if workload.obj is None:
        return _progress(
            f"waiting for the {workload.kind} {workload.name} to be created", 0, wanted
        )
    views = pod_views(workload, pods)
    ready = _ready_group_indexes(workload, views)
    available = min(len(ready), wanted)
    failure = _failure(workload, views, crash_logs, recreations, ready, evidence)
    if failure is not None:
        return Observation(EndpointStatus.UPDATE_FAILED, failure, available, wanted - available)
    waiting = _waiting_for(workload, views, wanted, ready, evidence, recreations)
    if waiting is not None:
        return _progress(waiting, available, wanted)
    notes = [_recreated(index, r, log=False) for index, r in sorted(recreations.items()) if r.count]
    reason = "ready" if wanted else "scaled to zero replicas"
    return Observation(EndpointStatus.READY, "; ".join([reason, *notes]), available, 0)


def wanted_groups(workload: Workload) -> int:
    spec = (workload.obj or {}).get("spec") or {}
    replicas = spec.get("replicas")
    return int(replicas) if replicas is not None else workload.default_replicas


def ready_groups(workload: Workload, pods: Sequence[Object]) -> int:
    """How many groups serve now (for routing): leader and workers all Ready."""
    return len(_ready_group_indexes(workload, pod_views(workload, pods)))


def crashing_containers(pods: Iterable[Object]) -> list[CrashingContainer]:
    found = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        for container in _container_statuses(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                name = str(container.get("name"))
                key = (str(metadata.get("uid")), name, int(container.get("restartCount") or 0))
                found.append(CrashingContainer(str(metadata.get("name")), name, key))
    return found


def pod_views(workload: Workload, pods: Sequence[Object]) -> list[PodView]:
    """Live pods with their group and rank. A Deployment's pods are one-pod groups,
    numbered by age (the `group` of `llm-launch logs`)."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if workload.kind != "LeaderWorkerSet":
        live.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        return [PodView(p["metadata"]["name"], i, 0, p) for i, p in enumerate(live)]
    views = []
    for pod in live:
        labels = pod["metadata"].get("labels") or {}
        group, rank = labels.get(GROUP_INDEX_LABEL, ""), labels.get(WORKER_INDEX_LABEL, "")
        if group.isdigit() and rank.isdigit():
            views.append(PodView(pod["metadata"]["name"], int(group), int(rank), pod))
    return sorted(views, key=lambda v: (v.group, v.rank))


def _group_size(workload: Workload) -> int:
    spec = (workload.obj or {}).get("spec") or {}
    return int((spec.get("leaderWorkerTemplate") or {}).get("size") or 1)


def _ready_group_indexes(workload: Workload, views: Sequence[PodView]) -> set[int]:
    size = _group_size(workload) if workload.kind == "LeaderWorkerSet" else 1
    groups: dict[int, list[PodView]] = {}
    for view in views:
        groups.setdefault(view.group, []).append(view)
    return {
        index
        for index, members in groups.items()
        if len(members) >= size and all(v.ready for v in members)
    }


def _failure(
    workload: Workload,
    views: Sequence[PodView],
    crash_logs: Mapping[tuple[str, str, int], str],
    recreations: Mapping[int, Recreations],
    ready: set[int],
    evidence: Evidence,
) -> str | None:
    for view in views:
        problem = _container_failure(view, crash_logs) or _unschedulable_too_long(view, evidence)
        if problem is not None:
            return problem
    for index, recreated in sorted(recreations.items()):
        if index in ready:
            continue
        if recreated.since_ready >= RECREATION_LIMIT:  # whatever the time between them
            return _never_ready(index, recreated)
        if recreated.count >= RECREATION_LIMIT:
            return _recreated(index, recreated) + "; it will not get further without a fix"
    return _stalled(workload)


def _never_ready(index: int, recreated: Recreations) -> str:
    """A group recreated again and again without becoming Ready in between, and why."""
    reason = (
        f"group {index} was recreated {recreated.since_ready} times without ever becoming ready"
    )
    if recreated.probe_kill:
        budget = recreated.startup_budget_s
        spent = f"startup probe budget {_duration(budget)}" if budget else "startup probe budget"
        reason += (
            f": {spent} exceeded while waiting for workers, downloading and loading weights "
            f"(the kubelet: {recreated.probe_kill}). Raise the startup budget, or keep weights "
            "in a node-local cache or a shared volume so that a recreated group reuses them"
        )
    elif recreated.last_cause:
        reason += f" (last: {recreated.last_cause})"
    return reason + _log_excerpt(recreated)


def _log_excerpt(recreated: Recreations) -> str:
    log = (recreated.log or "").strip("\n")
    if not log:
        return ""
    return "; its last log lines:\n" + "\n".join(f"  {line}" for line in log.splitlines())


def _stalled(workload: Workload) -> str | None:
    """A Deployment past its progressDeadlineSeconds (the controller gave up waiting)."""
    if workload.kind != "Deployment":
        # LeaderWorkerSet turns Progressing False when its groups become Available (the two
        # are exclusive: kubernetes-sigs/lws leaderworkerset_controller.go setCondition).
        return None
    for condition in ((workload.obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return f"the {workload.kind} stopped progressing: {condition.get('message')}"
    return None


def _container_failure(view: PodView, crash_logs: Mapping[tuple[str, str, int], str]) -> str | None:
    images = {c.get("name"): c.get("image") for c in _containers(view.pod)}
    where = f"pod {view.name} (group {view.group}, {view.role})"
    for container in _container_statuses(view.pod):
        name = container.get("name")
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason") or "", waiting.get("message") or ""
        if reason in PULL_FAILURES:
            image = images.get(name) or container.get("image")
            return (
                f"cannot pull image {image!r} for container {name} of {where}: {reason}"
                f"{': ' + message if message else ''}. Check inference_framework_image_tag and "
                "that the cluster can reach the registry (imagePullSecrets)"
            )
        if reason == "CrashLoopBackOff":
            return _crash_loop(view, container, where, crash_logs)
        if reason in START_FAILURES:
            return f"container {name} of {where} cannot start: {reason}: {message}"
    return None


def _crash_loop(
    view: PodView,
    container: Object,
    where: str,
    crash_logs: Mapping[tuple[str, str, int], str],
) -> str:
    name = str(container.get("name"))
    restarts = int(container.get("restartCount") or 0)
    terminated = (container.get("lastState") or {}).get("terminated")
    exited = describe_exit(terminated) if terminated else "exited"
    reason = f"container {name} of {where} keeps crashing: {exited}, restarted {restarts} times"
    uid = str(view.pod["metadata"].get("uid"))
    log = crash_logs.get((uid, name, restarts), "").strip("\n")
    if log:
        reason += "; its last log lines:\n" + "\n".join(f"  {line}" for line in log.splitlines())
    return reason


@dataclass(frozen=True)
class _Unschedulable:
    view: PodView
    message: str  # the scheduler's words
    resource: str | None  # what no node has enough of (a GPU resource first)
    asked: str  # the pod's request of it
    since: datetime | None  # when the pod became unschedulable


def _unschedulable(view: PodView) -> _Unschedulable | None:
    conditions = (view.pod.get("status") or {}).get("conditions") or []
    scheduled = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
    if not scheduled or scheduled.get("status") != "False":
        return None
    if scheduled.get("reason") != "Unschedulable":
        return None
    message = str(scheduled.get("message") or "no reason given").strip().rstrip(".")
    short = set(_INSUFFICIENT.findall(message))
    gpu = next((r for r in sorted(short) if r.endswith("/gpu")), None)
    resource = gpu or ("memory" if "memory" in short else "cpu" if "cpu" in short else None)
    asked = _requested(view.pod, resource) if resource else ""
    since = _time(scheduled.get("lastTransitionTime")) or _time(
        view.pod["metadata"].get("creationTimestamp")
    )
    return _Unschedulable(view, message, resource, asked, since)


def _unschedulable_too_long(view: PodView, evidence: Evidence) -> str | None:
    """A pod Pending for want of a node fails the endpoint only after the configured time:
    until then a cluster autoscaler or Karpenter may be adding the node (which takes
    minutes for GPU nodes), and the reason says what it waits for."""
    pending = _unschedulable(view)
    if pending is None:
        return None
    now = evidence.now or datetime.now(UTC)
    waited = (now - pending.since).total_seconds() if pending.since else 0.0
    if waited < evidence.unschedulable_timeout_s:
        return None
    where = f"group {view.group} cannot be scheduled: pod {view.name} ({view.role})"
    after = f" for {_duration(waited)}"
    message, resource = pending.message, pending.resource
    if resource is not None and resource.endswith("/gpu"):
        return (
            f"{where} needs {pending.asked} {resource} and no node has had that many free"
            f"{after} ({message}). Free GPUs, add GPU nodes, or lower gpus"
        )
    if resource is not None:
        field = "memory" if resource == "memory" else "cpus"
        return (
            f"{where} needs {pending.asked} {resource} and no node has had that much free"
            f"{after} ({message}). Lower {field} or add larger nodes"
        )
    return f"{where}{after}: {message}. Check gpu_type (the node selector) and the nodes' taints"


def _capacity_wait(views: Sequence[PodView], evidence: Evidence) -> str | None:
    """'waiting for 8 nvidia.com/gpu ...' while pods are unschedulable (not yet too long),
    with what the cluster autoscaler or Karpenter said about it."""
    pending = [p for p in (_unschedulable(v) for v in views) if p is not None]
    if not pending:
        return None
    first = pending[0]
    need = f"{first.asked} {first.resource}" if first.resource else "a node that fits"
    others = f" (and {len(pending) - 1} more pods)" if len(pending) > 1 else ""
    reason = (
        f"group {first.view.group}: pod {first.view.name} ({first.view.role}) is waiting for "
        f"{need}{others}: {first.message}"
    )
    uids = [str(p.view.pod["metadata"].get("uid")) for p in pending]
    scale_up = next((e for u in uids if (e := latest(evidence.events, u, SCALE_UP))), None)
    declined = next((e for u in uids if (e := latest(evidence.events, u, [NO_SCALE_UP]))), None)
    if scale_up is not None:
        reason += f"; a scale-up was triggered ({scale_up.quote()})"
    elif declined is not None:
        reason += f"; the cluster autoscaler did not scale up ({declined.quote()})"
    if first.since is not None:
        limit = _duration(evidence.unschedulable_timeout_s)
        reason += f"; pending since {first.since.isoformat()}, fails after {limit}"
    return reason


def _waiting_for(
    workload: Workload,
    views: Sequence[PodView],
    wanted: int,
    ready: set[int],
    evidence: Evidence,
    recreations: Mapping[int, Recreations],
) -> str | None:
    obj = workload.obj or {}
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    applied = (metadata.get("annotations") or {}).get(ANNOTATION_GENERATION)
    if applied is not None and applied != str(workload.generation):
        return f"applying generation {workload.generation} (the cluster has generation {applied})"
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return (
            f"waiting for the {workload.kind} controller to take up the change "
            "(if this lasts, check that the controller is installed and running)"
        )
    capacity = _capacity_wait(views, evidence)
    if capacity is not None:
        return capacity
    updated = int(status.get("updatedReplicas") or 0)
    if updated < wanted and _revisions(views) > 1:
        return f"rolling out: {updated} of {wanted} groups updated, {len(ready)} ready"
    # LeaderWorkerSet groups have fixed indexes; a Deployment's pods are interchangeable.
    indexes = range(wanted) if workload.kind == "LeaderWorkerSet" else range(len(views) + 1)
    missing = [i for i in indexes if i not in ready]
    if missing and (workload.kind == "LeaderWorkerSet" or len(ready) < wanted):
        index = missing[0]
        members = [v for v in views if v.group == index]
        return (
            _describe_group(workload, index, members)
            + _recreated_since_ready(recreations.get(index))
            + _last_problem(workload, members, evidence)
        )
    if len(ready) < wanted or int(status.get("readyReplicas") or 0) < wanted:
        counted = int(status.get("readyReplicas") or 0)
        return f"waiting for the {workload.kind} to count {wanted} ready groups ({counted} so far)"
    return None


def _revisions(views: Sequence[PodView]) -> int:
    """How many pod template revisions the live pods span. The controller also counts a
    group fewer as updated while it recreates one (LWS leaves a group out of its counts
    until its worker StatefulSet exists again), with every pod on one revision: that is no
    rollout, and the group's own description says what it waits for."""
    labels = (v.pod["metadata"].get("labels") or {} for v in views)
    return len({next((lab[k] for k in REVISION_LABELS if k in lab), None) for lab in labels})


def _describe_group(workload: Workload, index: int, members: Sequence[PodView]) -> str:
    size = _group_size(workload) if workload.kind == "LeaderWorkerSet" else 1
    if len(members) < size:
        return f"group {index}: {len(members)} of {size} pods created"
    for view in members:
        state = _pod_state(view.pod)
        if state is not None:
            return f"group {index}: pod {view.name} ({view.role}) is {state}"
    leader = members[0]
    if not leader.ready:
        return (
            f"group {index}: waiting for the leader {leader.name} to pass its readiness "
            "check (a real generation)"
        )
    worker = next(v for v in members if not v.ready)
    return f"group {index}: waiting for {worker.role} {worker.name} to become ready"


def _recreated_since_ready(recreated: Recreations | None) -> str:
    """While a recreated group comes back: why it was recreated, and its last log lines
    (captured before the group's pods were deleted)."""
    if recreated is None or not recreated.since_ready:
        return ""
    times = "time" if recreated.since_ready == 1 else "times"
    last = f" (last: {recreated.last_cause})" if recreated.last_cause else ""
    return (
        f"; recreated {recreated.since_ready} {times} since it was last ready{last}"
        + _log_excerpt(recreated)
    )


def _last_problem(workload: Workload, members: Sequence[PodView], evidence: Evidence) -> str:
    """The latest problem event about the group's pods (or, when pods are missing, about
    the workload's controllers: FailedCreate), quoted after the group's state."""
    uids = {str(v.pod["metadata"].get("uid")) for v in members}
    owners = {
        str(r.get("uid")) for v in members for r in v.pod["metadata"].get("ownerReferences") or []
    }
    uids |= owners | {str(((workload.obj or {}).get("metadata") or {}).get("uid"))}
    found = [e for e in evidence.events if e.uid in uids and e.reason in PROBLEMS]
    return f"; last event: {found[-1].quote()}" if found else ""


def _pod_state(pod: Object) -> str | None:
    """Why a pod is not running yet (Pending, ContainerCreating, evicted...), or None."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Failed":
        return f"Failed ({status.get('reason') or ''}: {status.get('message') or ''})"
    for container in _container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return f"{waiting.get('reason') or 'waiting'} (container {container.get('name')})"
    return None if phase == "Running" else phase


def _recreated(index: int, recreated: Recreations, *, log: bool = True) -> str:
    times = "time" if recreated.count == 1 else "times"
    last = f" (last: {recreated.last_cause})" if recreated.last_cause else ""
    reason = f"group {index} was recreated {recreated.count} {times} after a pod failed{last}"
    return reason + (_log_excerpt(recreated) if log else "")


def _progress(reason: str, available: int, wanted: int) -> Observation:
    return Observation(EndpointStatus.UPDATE_IN_PROGRESS, reason, available, wanted - available)


def _condition(pod: Object, kind: str) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _containers(pod: Object) -> list[Object]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _container_statuses(pod: Object) -> list[Object]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _requested(pod: Object, resource: str) -> str:
    """The pod's request of `resource`, as written (summed when it is a whole number)."""
    values = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource)
        value = value if value is not None else (resources.get("limits") or {}).get(resource)
        if value is not None:
            values.append(str(value))
    if values and all(v.isdigit() for v in values):
        return str(sum(int(v) for v in values))
    return " + ".join(values) or "some"


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time of the API (`2026-01-02T03:04:05Z`, maybe with fractions)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
