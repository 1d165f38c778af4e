"""Group recreations: what a LeaderWorkerSet hides by recreating a failed group.

With `RecreateGroupOnPodRestart`, when any pod of a group fails the LeaderWorkerSet
controller deletes the whole group and creates it again, so the new pods start with
restart count 0 and the failure leaves no trace on them. The pod watch (`watch.py`) feeds
every pod event here; `status.observe` reads the recreations of each group from
`recreations()`. Pure bookkeeping, no I/O; the clock is injected.

A recreation is a leader pod that comes back under the same name with a new uid and the
same template revision (a rollout to a new revision is not a failure). The cause recorded
is the last container termination seen in the group before it, taken from pods that were
not yet being deleted (the kill that deletion causes is not the cause).

Under `RecreateGroupOnPodRestart` the LWS controller deletes the group as soon as a
container of any of its pods restarts (lws `pkg/controllers/pod_controller.go`; see
https://lws.sigs.k8s.io/docs/concepts/ "Restart policy"), so no container ever reaches
CrashLoopBackOff and its log goes with the pod. Hence `on_termination`: called the moment
the watch first shows a failed termination, so that the backend can fetch the last log
lines (`attach_log`) before the pod is gone. Recreations are also counted since the group
was last Ready, with no time window: a group whose startup (download plus load) outlasts
the startup probe's budget is recreated every half hour for ever, never 3 times in 10
minutes. The kubelet's `Killing` event ("Container engine failed startup probe, will be
restarted") and `Unhealthy` ("Startup probe failed: ...") events (fed to `record_event`)
say when the kill came from the startup probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_launch.backends.kubernetes.render_names import LABEL_ENDPOINT_ID

GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
REVISION_LABELS = ("leaderworkerset.sigs.k8s.io/template-revision-hash", "pod-template-hash")


@dataclass(frozen=True)
class Recreations:
    """How often one group was recreated within the window (and since it was last Ready,
    whatever the window), and the last known cause."""

    count: int
    last_cause: str | None
    since_ready: int = 0  # recreations since the group was last Ready (no window)
    log: str | None = None  # the last lines of the failed container, captured in time
    probe_kill: str | None = None  # the kubelet's word that the startup probe killed it
    startup_budget_s: float | None = None  # the leader's startup probe budget


@dataclass(frozen=True)
class Termination:
    """A container that ended with a failure, as the pod watch first saw it."""

    endpoint_id: str
    pod: str
    container: str
    previous: bool  # already restarted: its log is the `previous=true` one
    key: tuple[str, str, int]  # pod uid, container, restart count


@dataclass
class _Group:
    times: list[float] = field(default_factory=list)
    last_cause: str | None = None
    last_key: tuple[str, str, int] | None = None
    since_ready: int = 0
    probe_kill: str | None = None
    startup_budget_s: float | None = None


class RecreationTracker:
    def __init__(
        self,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        on_termination: Callable[[Termination], None] | None = None,
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._on_termination = on_termination
        self._leaders: dict[tuple[str, str], tuple[str, str]] = {}  # (id, pod) -> uid, rev
        self._groups: dict[tuple[str, int], _Group] = {}
        self._pods: dict[str, tuple[str, int]] = {}  # pod uid -> endpoint id, group
        self._logs: dict[tuple[str, str, int], str] = {}

    def attach_log(self, key: tuple[str, str, int], text: str) -> None:
        """The last log lines of the termination `key` (fetched by the backend)."""
        self._logs[key] = text

    def log_of(self, key: tuple[str, str, int]) -> str | None:
        return self._logs.get(key)

    def record_event(self, event_type: str, event: dict[str, Any]) -> None:
        """Feed one Event: a startup-probe kill of a group's container is remembered."""
        involved = event.get("involvedObject") or {}
        where = self._pods.get(str(involved.get("uid") or ""))
        message = str(event.get("message") or "")
        if event_type == "DELETED" or where is None or "startup probe" not in message.lower():
            return
        if event.get("reason") in ("Killing", "Unhealthy"):
            group = self._groups.setdefault(where, _Group())
            if event.get("reason") == "Killing" or group.probe_kill is None:
                group.probe_kill = " ".join(message.split())[:300]

    def record(self, event_type: str, pod: dict[str, Any]) -> None:
        """Feed one pod watch event (ADDED, MODIFIED or DELETED)."""
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        endpoint_id = labels.get(LABEL_ENDPOINT_ID)
        group_label = labels.get(GROUP_INDEX_LABEL)
        if endpoint_id is None or group_label is None or not str(group_label).isdigit():
            return
        group = self._groups.setdefault((endpoint_id, int(group_label)), _Group())
        uid = str(metadata.get("uid") or "")
        if event_type == "DELETED":
            self._pods.pop(uid, None)
        else:
            self._pods[uid] = (endpoint_id, int(group_label))
        if event_type != "DELETED" and not metadata.get("deletionTimestamp"):
            self._note_termination(endpoint_id, pod, group)
        if labels.get(WORKER_INDEX_LABEL) == "0" and event_type != "DELETED":
            self._track_leader(endpoint_id, metadata, labels, group)
            if _ready(pod):
                group.since_ready, group.probe_kill = 0, None
            group.startup_budget_s = startup_budget_s(pod) or group.startup_budget_s

    def _note_termination(self, endpoint_id: str, pod: dict[str, Any], group: _Group) -> None:
        found = _failed_container(pod)
        if found is None:
            return
        container, terminated, previous = found
        name = str(pod["metadata"].get("name"))
        group.last_cause = (
            f"container {container.get('name')} of pod {name} {describe_exit(terminated)}"
        )
        key = (
            str(pod["metadata"].get("uid")),
            str(container.get("name")),
            int(container.get("restartCount") or 0),
        )
        if key == group.last_key:
            return
        group.last_key = key
        message = str(terminated.get("message") or "").strip()
        if message:  # terminationMessagePolicy FallbackToLogsOnError: the log's tail
            self._logs.setdefault(key, message)
        if self._on_termination is not None:
            container_name = str(container.get("name"))
            self._on_termination(Termination(endpoint_id, name, container_name, previous, key))

    def recreations(self, endpoint_id: str) -> dict[int, Recreations]:
        since = self._clock() - self._window_s
        result = {}
        for (owner, index), group in self._groups.items():
            group.times = [t for t in group.times if t >= since]
            if owner == endpoint_id and (group.times or group.since_ready):
                result[index] = Recreations(
                    len(group.times),
                    group.last_cause,
                    group.since_ready,
                    self._logs.get(group.last_key) if group.last_key else None,
                    group.probe_kill,
                    group.startup_budget_s,
                )
        return result

    def forget(self, endpoint_id: str) -> None:
        self._leaders = {k: v for k, v in self._leaders.items() if k[0] != endpoint_id}
        self._groups = {k: v for k, v in self._groups.items() if k[0] != endpoint_id}
        self._pods = {k: v for k, v in self._pods.items() if v[0] != endpoint_id}
        kept = {g.last_key for g in self._groups.values()}
        self._logs = {k: v for k, v in self._logs.items() if k in kept}

    def _track_leader(
        self, endpoint_id: str, metadata: dict[str, Any], labels: dict[str, str], group: _Group
    ) -> None:
        key = (endpoint_id, str(metadata.get("name")))
        uid = str(metadata.get("uid"))
        revision = next((labels[k] for k in REVISION_LABELS if k in labels), "")
        previous = self._leaders.get(key)
        self._leaders[key] = (uid, revision)
        if previous is not None and previous[0] != uid and previous[1] == revision:
            group.times.append(self._clock())
            group.since_ready += 1


def termination_cause(pod: dict[str, Any]) -> str | None:
    """The last container termination of a pod that was not a clean exit, in words."""
    name = (pod.get("metadata") or {}).get("name")
    found = _failed_container(pod)
    if found is None:
        return None
    container, terminated, _ = found
    return f"container {container.get('name')} of pod {name} {describe_exit(terminated)}"


def _failed_container(
    pod: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], bool] | None:
    """(container status, its failed termination, whether it has restarted since)."""
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for container in statuses:
        for state_key in ("state", "lastState"):
            terminated = (container.get(state_key) or {}).get("terminated")
            if terminated and (terminated.get("exitCode") or 0) != 0:
                return container, terminated, state_key == "lastState"
    return None


def startup_budget_s(pod: dict[str, Any]) -> float | None:
    """How long the kubelet lets the engine start: initialDelaySeconds + failureThreshold
    x periodSeconds of its startupProbe (defaults 0, 3 and 10 s, as the Pod API documents:
    https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#Probe)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        probe = container.get("startupProbe")
        if probe:
            delay = float(probe.get("initialDelaySeconds") or 0)
            return delay + float(probe.get("failureThreshold") or 3) * float(
                probe.get("periodSeconds") or 10
            )
    return None


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def describe_exit(terminated: dict[str, Any]) -> str:
    """`exited with code 137 (OOMKilled: out of memory; raise memory)` and the like."""
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    if reason == "OOMKilled":
        reason = "OOMKilled: out of memory; raise `memory`"
    return f"exited with code {code}" + (f" ({reason})" if reason else "")
