"""Kubernetes Events about an endpoint's objects: the cache the event watch fills, and the
pure helpers that pick and phrase the ones worth quoting in a status reason.

Caller: `backend.KubernetesBackend` (one Informer over core/v1 `events` in its namespace,
whose cache is an `EventIndex`; `observe` passes `for_objects(...)` to `status.observe`;
the recreation tracker hears Killing/Unhealthy events through a listener). Next hop: none.

Events carry no labels of ours, so they are matched to an endpoint by the object they are
about (`involvedObject.uid`: its pods, their owners, its workload), never by name prefix:
another owner's endpoint may have a name that starts with ours.

Reasons quoted, as their writers document them:
- kube-scheduler: `FailedScheduling` (the same words as the PodScheduled condition);
- cluster-autoscaler: `TriggeredScaleUp` ("pod triggered scale-up: [{group 5->9 (max:
  10)}]") and `NotTriggerScaleUp` ("pod didn't trigger scale-up: ..."), written on the
  pending pod (cluster-autoscaler FAQ, "What events are emitted by CA?",
  https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md);
- Karpenter: `Nominated` on the pod ("Pod should schedule on: nodeclaim/...") once it has
  launched or picked capacity for it (karpenter `pkg/events`);
- kubelet: `Unhealthy` ("Startup probe failed: ...", "Liveness probe failed: ..."),
  `Killing` ("Container engine failed startup probe, will be restarted"), `BackOff`,
  `Failed`, `FailedMount`, `FailedAttachVolume`, `FailedCreatePodSandBox`, `Evicted`
  (kubernetes `pkg/kubelet/events/event.go`);
- controllers: `FailedCreate` on the StatefulSet / ReplicaSet that cannot create a pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_launch.backends.kubernetes.watch import ObjectCache

Object = dict[str, Any]
SCALE_UP = frozenset({"TriggeredScaleUp", "Nominated"})
NO_SCALE_UP = "NotTriggerScaleUp"
PROBLEMS = frozenset(
    {
        "Unhealthy", "BackOff", "Failed", "FailedMount", "FailedAttachVolume",
        "FailedCreate", "FailedCreatePodSandBox", "Evicted", "Preempted", "FailedScheduling",
        NO_SCALE_UP,
    }
)  # fmt: skip
MAX_MESSAGE = 300


@dataclass(frozen=True)
class EventView:
    """One Event, reduced to what a reason quotes."""

    reason: str
    message: str
    kind: str  # of the object it is about
    name: str
    uid: str
    count: int
    last_seen: str  # RFC 3339, as the API gives it ("" when absent)

    def quote(self) -> str:
        times = f", {self.count} times" if self.count > 1 else ""
        when = f", last at {self.last_seen}" if self.last_seen else ""
        return f"{self.reason} on {self.kind.lower()} {self.name}: {self.message}{times}{when}"


class EventIndex(ObjectCache):
    """The event watch's cache, also indexed by the uid of the object each event is about."""

    def __init__(self) -> None:
        super().__init__()
        self._by_uid: dict[str, dict[str, Object]] = {}

    def apply(self, event_type: str, obj: Object) -> None:
        name = str(obj["metadata"]["name"])
        old = self.get(name)
        if old is not None:
            self._by_uid.get(_involved(old).get("uid", ""), {}).pop(name, None)
        super().apply(event_type, obj)
        uid = _involved(obj).get("uid")
        if event_type != "DELETED" and uid:
            self._by_uid.setdefault(str(uid), {})[name] = obj

    def about(self, uids: Iterable[str]) -> list[EventView]:
        """The events about any of `uids`, oldest first."""
        found = [view(e) for uid in set(uids) for e in self._by_uid.get(uid, {}).values()]
        return sorted(found, key=lambda e: e.last_seen)


def view(event: Object) -> EventView:
    involved = _involved(event)
    message = " ".join(str(event.get("message") or event.get("note") or "").split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    series = event.get("series") or {}
    count = int(series.get("count") or event.get("count") or 1)
    last = (
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
    return EventView(
        str(event.get("reason") or ""),
        message,
        str(involved.get("kind") or ""),
        str(involved.get("name") or ""),
        str(involved.get("uid") or ""),
        count,
        str(last),
    )


def related_uids(workload: Object | None, pods: Iterable[Object]) -> set[str]:
    """The uids an endpoint's events can be about: its workload, its pods and their owners
    (the LeaderWorkerSet's StatefulSets, a Deployment's ReplicaSets)."""
    uids = set()
    if workload is not None:
        uids.add(str(workload["metadata"].get("uid") or ""))
    for pod in pods:
        metadata = pod.get("metadata") or {}
        uids.add(str(metadata.get("uid") or ""))
        uids.update(str(r.get("uid") or "") for r in metadata.get("ownerReferences") or [])
    uids.discard("")
    return uids


def latest(events: Sequence[EventView], uid: str, reasons: Iterable[str]) -> EventView | None:
    wanted = set(reasons)
    return next((e for e in reversed(events) if e.uid == uid and e.reason in wanted), None)


def _involved(event: Object) -> dict[str, Any]:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return involved if isinstance(involved, dict) else {}
