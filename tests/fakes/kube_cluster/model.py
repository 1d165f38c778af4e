"""The simulated cluster's vocabulary: nodes, taints, per-pod behaviours, resource
quantities, pod conditions and Event objects, shared by the scheduler, kubelet and
controllers of `tests/fakes/kube_cluster`.

Quantities follow the Kubernetes resource.Quantity suffixes (docs: "Resource units in
Kubernetes", https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/
#resource-units-in-kubernetes): binary Ki..Ei, decimal k..E, and `m` (milli).
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

Object = dict[str, Any]
GPU = "nvidia.com/gpu"
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_DECIMAL |= {"P": 10**15, "E": 10**18}
# rand.SafeEncodeString's alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no
# look-alike digits, used for pod-template-hash and generated name suffixes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def quantity(value: object) -> Fraction:
    """A resource quantity ("160", "500m", "800Gi") as an exact number."""
    text = str(value).strip()
    for suffix, factor in (*_BINARY.items(), *_DECIMAL.items()):
        if text.endswith(suffix) and text[: -len(suffix)]:
            return Fraction(text[: -len(suffix)]) * factor
    return Fraction(text)


def safe_hash(text: str, length: int = 10) -> str:
    """A stable name-safe hash (as pod-template-hash and LWS revision hashes look)."""
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        digest, index = divmod(digest, len(_SAFE))
        chars.append(_SAFE[index])
    return "".join(chars)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Taint:
    """A node taint (core/v1 Taint); NoSchedule and NoExecute keep pods off the node."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass
class Node:
    """A node's allocatable resources, labels and taints (no Node object is served)."""

    name: str
    gpus: int = 8
    cpu: str = "192"
    memory: str = "2Ti"
    ephemeral_storage: str = "4Ti"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)

    def allocatable(self) -> dict[str, Fraction]:
        return {
            GPU: Fraction(self.gpus),
            "cpu": quantity(self.cpu),
            "memory": quantity(self.memory),
            "ephemeral-storage": quantity(self.ephemeral_storage),
        }


@dataclass
class Behaviour:
    """How the kubelet runs the pods a rule matches (see `FakeCluster.behave`).

    create_ticks: ticks in ContainerCreating; ready_ticks: ticks Running before the
    readiness probes pass; ready: False keeps the readiness probe failing for ever;
    pull_error: the image pull fails with this reason (ErrImagePull, then ImagePullBackOff);
    crash_after: each run of a container ends after this many ticks, with exit_code/reason.
    """

    create_ticks: int = 1
    ready_ticks: int = 1
    ready: bool = True
    pull_error: str | None = None
    crash_after: int | None = None
    exit_code: int = 1
    reason: str = "Error"


@dataclass
class Rule:
    pattern: str  # a pod name glob, or "role:leader" / "role:worker"
    behaviour: Behaviour

    def matches(self, pod: Object) -> bool:
        if self.pattern.startswith("role:"):
            return pod_role(pod) == self.pattern[len("role:") :]
        return fnmatch.fnmatchcase(pod["metadata"]["name"], self.pattern)


def pod_role(pod: Object) -> str:
    labels = pod["metadata"].get("labels") or {}
    index = labels.get("leaderworkerset.sigs.k8s.io/worker-index")
    return "worker" if index not in (None, "0") else "leader"


def requests_of(pod: Object) -> dict[str, Fraction]:
    """What a pod asks of a node: the sum of its containers' requests (limits where a
    request is missing, as the API server defaults requests from limits)."""
    total: dict[str, Fraction] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in wanted.items():
            total[name] = total.get(name, Fraction(0)) + quantity(value)
    return total


def set_condition(
    status: Object, kind: str, value: str, reason: str = "", message: str = ""
) -> None:
    """Set a pod condition, moving lastTransitionTime only when its status changes (as the
    kubelet's status manager does)."""
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == kind), None)
    condition: Object = {"type": kind, "status": value, "lastProbeTime": None}
    condition["lastTransitionTime"] = (
        current["lastTransitionTime"] if current and current["status"] == value else now()
    )
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if current is None:
        conditions.append(condition)
    else:
        conditions[conditions.index(current)] = condition


def condition_of(pod: Object, kind: str) -> Object | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def owner_reference(obj: Object, *, controller: bool = True) -> Object:
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Pod"),
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def event(
    involved: Object,
    reason: str,
    message: str,
    *,
    warning: bool,
    component: str,
    host: str | None = None,
) -> Object:
    """A core/v1 Event about `involved`, as client-go's event recorder writes one."""
    metadata = involved["metadata"]
    stamp = now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            # client-go names it "<object>.<unix nanoseconds in hex>"; random hex here
            "name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": metadata.get("namespace", "default"),
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", "Pod"),
            "name": metadata["name"],
            "namespace": metadata.get("namespace", "default"),
            "uid": metadata.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": component, **({"host": host} if host else {})},
        "reportingComponent": component,
        "reportingInstance": host or component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
