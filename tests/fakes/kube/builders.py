"""Objects as the cluster's controllers and kubelet write them, for the test API server's
hooks and for unit tests: pods (`pod`, `lws_pod`), container statuses (`running`,
`waiting`), the scheduler's condition (`unschedulable`) and core/v1 Events (`event`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

Object = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod(
    name: str,
    labels: dict[str, str],
    *,
    statuses: list[Object] | None = None,
    ready: bool = False,
    phase: str = "Running",
    scheduled: Object | None = None,
    requests: dict[str, str] | None = None,
    owner_uid: str | None = None,
    uid: str | None = None,
) -> Object:
    """A pod with an `engine` container (and the given container statuses)."""
    statuses = statuses if statuses is not None else [running("engine", ready=ready)]
    conditions = [scheduled or {"type": "PodScheduled", "status": "True"}]
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    metadata: Object = {"name": name, "namespace": "default", "labels": dict(labels)}
    metadata["uid"] = uid or str(uuid.uuid4())
    if owner_uid:
        metadata["ownerReferences"] = [{"kind": "StatefulSet", "name": name, "uid": owner_uid}]
    containers = [
        {"name": s["name"], "image": s.get("image", "ghcr.io/llm-launch/sglang:v1")}
        for s in statuses
    ] or [{"name": "engine", "image": "ghcr.io/llm-launch/sglang:v1"}]
    containers[0]["resources"] = {"requests": dict(requests or {}), "limits": dict(requests or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers},
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses},
    }


def lws_pod(
    lws: str, group: int, rank: int, endpoint_id: str, *, revision: str = "rev-1", **kwargs: Any
) -> Object:
    """A LeaderWorkerSet pod: leader `<lws>-<group>`, workers `<lws>-<group>-<rank>`."""
    labels = {
        "app.kubernetes.io/managed-by": "llm-launch",
        "llm-launch.io/endpoint-id": endpoint_id,
        "leaderworkerset.sigs.k8s.io/name": lws,
        "leaderworkerset.sigs.k8s.io/group-index": str(group),
        "leaderworkerset.sigs.k8s.io/worker-index": str(rank),
        "leaderworkerset.sigs.k8s.io/template-revision-hash": revision,
    }
    return pod(f"{lws}-{group}" + (f"-{rank}" if rank else ""), labels, **kwargs)


def running(
    name: str = "engine",
    *,
    ready: bool = True,
    restarts: int = 0,
    exit_code: int | None = None,
    exit_reason: str = "Error",
) -> Object:
    """A running container; `exit_code` (and `exit_reason`) describe its previous run."""
    status: Object = {"name": name, "ready": ready, "restartCount": restarts}
    status["state"] = {"running": {"startedAt": now()}}
    if exit_code is not None:
        status["lastState"] = {"terminated": _terminated(exit_code, exit_reason)}
    return status


def waiting(
    name: str,
    reason: str,
    message: str = "",
    *,
    restarts: int = 0,
    image: str | None = None,
    exit_code: int | None = None,
    exit_reason: str = "Error",
) -> Object:
    """A container waiting (ImagePullBackOff, CrashLoopBackOff, ...), maybe after a run that
    ended with `exit_code`."""
    status: Object = {"name": name, "ready": False, "restartCount": restarts}
    status["state"] = {"waiting": {"reason": reason, "message": message}}
    if image:
        status["image"] = image
    if exit_code is not None:
        status["lastState"] = {"terminated": _terminated(exit_code, exit_reason)}
    return status


def unschedulable(message: str) -> Object:
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
    }


def _terminated(exit_code: int, reason: str = "Error") -> Object:
    return {"exitCode": exit_code, "reason": reason, "finishedAt": now()}


def event(
    involved: Object,
    reason: str,
    message: str,
    *,
    type: str = "Warning",
    component: str = "default-scheduler",
    count: int = 1,
) -> Object:
    """A core/v1 Event about `involved`, as client-go's event recorder (tools/record)
    writes it: named `<object>.<hex nanoseconds>`, with `involvedObject`, `source`, the
    reporting component, `count` and first/last timestamps (Kubernetes API reference,
    Event v1 core)."""
    metadata = involved.get("metadata") or {}
    stamp = now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{metadata.get('name')}.{uuid.uuid4().int % 16**16:016x}",
            "namespace": metadata.get("namespace", "default"),
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", "Pod"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace", "default"),
            "uid": metadata.get("uid", ""),
            "resourceVersion": metadata.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message,
        "type": type,
        "count": count,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
    }
