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
    """How often one group was recreated within the window, and the last known cause."""

    count: int
    last_cause: str | None


@dataclass
class _Group:
    times: list[float] = field(default_factory=list)
    last_cause: str | None = None


class RecreationTracker:
    def __init__(
        self, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._leaders: dict[tuple[str, str], tuple[str, str]] = {}  # (id, pod) -> uid, rev
        self._groups: dict[tuple[str, int], _Group] = {}

    def record(self, event_type: str, pod: dict[str, Any]) -> None:
        """Feed one pod watch event (ADDED, MODIFIED or DELETED)."""
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        endpoint_id = labels.get(LABEL_ENDPOINT_ID)
        group_label = labels.get(GROUP_INDEX_LABEL)
        if endpoint_id is None or group_label is None or not str(group_label).isdigit():
            return
        group = self._groups.setdefault((endpoint_id, int(group_label)), _Group())
        if event_type != "DELETED" and not metadata.get("deletionTimestamp"):
            cause = termination_cause(pod)
            if cause is not None:
                group.last_cause = cause
        if labels.get(WORKER_INDEX_LABEL) == "0" and event_type != "DELETED":
            self._track_leader(endpoint_id, metadata, labels, group)

    def recreations(self, endpoint_id: str) -> dict[int, Recreations]:
        since = self._clock() - self._window_s
        result = {}
        for (owner, index), group in self._groups.items():
            group.times = [t for t in group.times if t >= since]
            if owner == endpoint_id and group.times:
                result[index] = Recreations(len(group.times), group.last_cause)
        return result

    def forget(self, endpoint_id: str) -> None:
        self._leaders = {k: v for k, v in self._leaders.items() if k[0] != endpoint_id}
        self._groups = {k: v for k, v in self._groups.items() if k[0] != endpoint_id}

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


def termination_cause(pod: dict[str, Any]) -> str | None:
    """The last container termination of a pod that was not a clean exit, in words."""
    name = (pod.get("metadata") or {}).get("name")
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for container in statuses:
        for state_key in ("state", "lastState"):
            terminated = (container.get(state_key) or {}).get("terminated")
            if terminated and (terminated.get("exitCode") or 0) != 0:
                return (
                    f"container {container.get('name')} of pod {name} {describe_exit(terminated)}"
                )
    return None


def describe_exit(terminated: dict[str, Any]) -> str:
    """`exited with code 137 (OOMKilled: out of memory; raise memory)` and the like."""
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    if reason == "OOMKilled":
        reason = "OOMKilled: out of memory; raise `memory`"
    return f"exited with code {code}" + (f" ({reason})" if reason else "")
