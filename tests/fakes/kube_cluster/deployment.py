"""The simulated Deployment controller, for single-node endpoints.

Caller: `FakeCluster.tick`, once per Deployment. Next hop: pods written with
`FakeKubeApi.put`/`remove`, the Deployment's status with `set_status`. Follows kubernetes
pkg/controller/deployment (sync.go, rolling.go, util/deployment_util.go) and the docs
("Deployments", https://kubernetes.io/docs/concepts/workloads/controllers/deployment/):

- pods `<deployment>-<pod-template-hash>-<5 characters>` labelled with the template's
  labels plus `pod-template-hash`, spec.replicas of them (default 1);
- a template change rolls out RollingUpdate-style: new pods up to replicas + maxSurge
  (default 25%, rounded up), an old pod removed only while the ready pods stay at least
  replicas - maxUnavailable (default 25%, rounded down);
- status: observedGeneration, replicas, updatedReplicas, readyReplicas,
  availableReplicas (minReadySeconds 0), unavailableReplicas, and conditions Available
  (MinimumReplicasAvailable "Deployment has minimum availability." /
  MinimumReplicasUnavailable "Deployment does not have minimum availability.") and
  Progressing (NewReplicaSetAvailable 'ReplicaSet "<rs>" has successfully progressed.' /
  ReplicaSetUpdated 'ReplicaSet "<rs>" is progressing.').

Simplified: no ReplicaSet objects are stored (pods are owned by the Deployment), the hash
is a hash of the template, progressDeadlineSeconds never expires (no
ProgressDeadlineExceeded), and a Failed pod is removed and replaced.
"""

from __future__ import annotations

import json
import math
import uuid

from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.kube_cluster.model import Object, condition_of, owner_reference, safe_hash
from tests.fakes.kube_cluster.model import set_condition as _set

HASH = "pod-template-hash"


class DeploymentController:
    def __init__(self, api: FakeKubeApi) -> None:
        self._api = api

    def reconcile(self, deployment: Object, pods: list[Object]) -> None:
        if deployment["metadata"].get("deletionTimestamp"):
            return
        uid = deployment["metadata"]["uid"]
        mine = [p for p in pods if uid in _owners(p) and not p["metadata"].get("deletionTimestamp")]
        for pod in [p for p in mine if (p.get("status") or {}).get("phase") == "Failed"]:
            self._api.remove("pods", pod["metadata"]["name"], _ns(pod))
            mine.remove(pod)
        template_hash = safe_hash(
            json.dumps(deployment["spec"].get("template") or {}, sort_keys=True)
        )
        current = [p for p in mine if _labels(p).get(HASH) == template_hash]
        old = [p for p in mine if p not in current]
        replicas = _replicas(deployment)
        surge, unavailable = _rolling(deployment, replicas)
        while len(current) > replicas:  # scale down: unready pods first, then the newest
            newest = sorted(current, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            victim = sorted(newest, key=_ready)[0]
            self._api.remove("pods", victim["metadata"]["name"], _ns(victim))
            current.remove(victim)
        while len(current) < replicas and len(current) + len(old) < replicas + surge:
            current.append(self._api.put("pods", self._pod(deployment, template_hash)))
        ready = sum(_ready(p) for p in [*current, *old])
        for pod in sorted(old, key=_ready):
            if ready - _ready(pod) >= replicas - unavailable:
                self._api.remove("pods", pod["metadata"]["name"], _ns(pod))
                ready -= _ready(pod)
                old.remove(pod)
        self._update_status(deployment, current, old, template_hash)

    def _pod(self, deployment: Object, template_hash: str) -> Object:
        template = deployment["spec"].get("template") or {}
        metadata = template.get("metadata") or {}
        spec = json.loads(json.dumps(template.get("spec") or {}))
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        name = f"{deployment['metadata']['name']}-{template_hash}-{safe_hash(uuid.uuid4().hex, 5)}"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": _ns(deployment),
                "labels": {**(metadata.get("labels") or {}), HASH: template_hash},
                "annotations": dict(metadata.get("annotations") or {}),
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }

    def _update_status(
        self, deployment: Object, current: list[Object], old: list[Object], template_hash: str
    ) -> None:
        replicas = _replicas(deployment)
        _, unavailable = _rolling(deployment, replicas)
        available = sum(_ready(p) for p in [*current, *old])
        status = json.loads(json.dumps(deployment.get("status") or {}))
        status.update(
            observedGeneration=deployment["metadata"].get("generation", 1),
            replicas=len(current) + len(old),
            updatedReplicas=len(current),
            readyReplicas=available,
            availableReplicas=available,
            unavailableReplicas=max(0, replicas - available),
        )
        if available >= replicas - unavailable:
            _set(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            message = "Deployment does not have minimum availability."
            _set(status, "Available", "False", "MinimumReplicasUnavailable", message)
        replica_set = f"{deployment['metadata']['name']}-{template_hash}"
        done = not old and len(current) == replicas and all(_ready(p) for p in current)
        if done:
            message = f'ReplicaSet "{replica_set}" has successfully progressed.'
            _set(status, "Progressing", "True", "NewReplicaSetAvailable", message)
        else:
            _set(
                status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{replica_set}" is progressing.',
            )
        for condition in status["conditions"]:
            condition.pop("lastProbeTime", None)  # Deployment conditions carry lastUpdateTime
        if status != deployment.get("status"):
            self._api.set_status(
                "deployments", deployment["metadata"]["name"], status, _ns(deployment)
            )


def _rolling(deployment: Object, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of pods; percentages as the controller rounds
    them (surge up, unavailable down), and never both zero."""
    strategy = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = _scaled(strategy.get("maxSurge", "25%"), replicas, up=True)
    unavailable = _scaled(strategy.get("maxUnavailable", "25%"), replicas, up=False)
    return (surge, unavailable) if surge or unavailable else (1, 0)


def _scaled(value: object, replicas: int, *, up: bool) -> int:
    text = str(value)
    if text.endswith("%"):
        exact = int(text[:-1]) * replicas / 100
        return math.ceil(exact) if up else math.floor(exact)
    return int(text)


def _ready(pod: Object) -> bool:
    ready = condition_of(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def _replicas(deployment: Object) -> int:
    replicas = deployment["spec"].get("replicas")
    return 1 if replicas is None else int(replicas)


def _owners(pod: Object) -> set[str]:
    return {r.get("uid") for r in pod["metadata"].get("ownerReferences") or []}


def _labels(obj: Object) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _ns(obj: Object) -> str:
    return str(obj["metadata"].get("namespace") or "default")
