"""The simulated LeaderWorkerSet controller: groups of pods, group recreation, status.

Caller: `FakeCluster.tick`, once per LeaderWorkerSet. Next hop: pods and the headless
Service written with `FakeKubeApi.put`/`remove`, the LeaderWorkerSet's status with
`set_status`, Events through `emit`. Follows kubernetes-sigs/lws:

- pkg/controllers/leaderworkerset_controller.go: the leader StatefulSet `<lws>` makes
  leader pods `<lws>-<g>` for g < spec.replicas (CRD default 1) from leaderTemplate, or
  workerTemplate when there is none, labelled `leaderworkerset.sigs.k8s.io/name`,
  `/worker-index: "0"`, `/template-revision-hash`, annotated `/size`; the headless Service
  `<lws>` (clusterIP None, selecting the name label) is created once; status: `replicas`
  (leader pods), `readyReplicas` (groups whose leader is Running and Ready and whose
  workers are all Ready), `updatedReplicas` (groups on the current revision),
  `observedGeneration`, `hpaPodSelector`, and conditions Available (AllGroupsReady, "All
  replicas are ready") / Progressing (GroupsProgressing, "Replicas are progressing") /
  UpdateInProgress (GroupsUpdating, "Rolling Upgrade is in progress"), set as its
  setCondition does (a new True condition turns the exclusive one False; an Event
  "<message>, with <r> groups ready of total <n> groups" when a condition changes);
- pkg/controllers/pod_controller.go: for a leader that exists and is not being deleted,
  the worker StatefulSet `<lws>-<g>` makes workers `<lws>-<g>-<i>` (i = 1..size-1) from
  workerTemplate, with the leader's group-index, group-key and revision labels and the
  `/leader-name` annotation: at once under startupPolicy LeaderCreated (the default), once
  the leader is Ready under LeaderReady. Under restartPolicy RecreateGroupOnPodRestart
  (the default) a pod with a restarted container (restartCount > 0 while Running or
  Pending, pkg/utils/pod ContainerRestarted) or being deleted makes it delete the group's
  leader with propagationPolicy Foreground, so the garbage collector removes the workers,
  then the leader, which the leader StatefulSet creates again;
- pkg/webhooks/pod_webhook.go and pkg/utils/pod AddLWSVariables: the group-index label
  from the leader's ordinal, group-key = sha1("<ns>/<leader pod>"), and the env
  LWS_LEADER_ADDRESS=<lws>-<g>.<subdomain>.<ns>, LWS_GROUP_SIZE, LWS_WORKER_INDEX put
  first in every container, keeping the template's other variables;
- scale down removes the groups with the highest indexes; a template change rolls groups
  onto the new revision from the highest index down, one unavailable group at a time
  (rolloutStrategy maxUnavailable 1, maxSurge 0, as this project renders it).

Simplified: no StatefulSets or ControllerRevisions are stored (leader pods are owned by the
LeaderWorkerSet, workers by their leader pod, so the garbage collector cascades the same
way), the revision hash is a hash of leaderWorkerTemplate, a Failed pod is treated as
deleted (the StatefulSet controller would delete and recreate it), and partition,
maxSurge, subGroupPolicy, exclusive placement and RecreateGroupAfterStart are not played.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable

from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.kube_cluster.model import Object, condition_of, now, owner_reference, safe_hash

PREFIX = "leaderworkerset.sigs.k8s.io/"
NAME, GROUP, WORKER = PREFIX + "name", PREFIX + "group-index", PREFIX + "worker-index"
GROUP_KEY, REVISION, SIZE = PREFIX + "group-key", PREFIX + "template-revision-hash", PREFIX + "size"
LEADER_NAME = PREFIX + "leader-name"
Emit = Callable[[Object, str, str, bool], None]  # object, reason, message, warning


class LeaderWorkerSetController:
    def __init__(self, api: FakeKubeApi, emit: Emit) -> None:
        self._api = api
        self._emit = emit

    def reconcile(self, lws: Object, pods: list[Object]) -> None:
        """One pass over one LeaderWorkerSet and its pods (short named steps, as Reconcile)."""
        if lws["metadata"].get("deletionTimestamp"):
            return
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(NAME) == _name(lws)]
        self._ensure_headless_service(lws)
        if self._recreate_restarted_groups(lws, mine):
            return  # the next tick sees the deletions
        self._scale(lws, mine)
        self._roll(lws, mine)
        self._create_workers(lws, mine)
        self._update_status(lws, self._pods_of(lws))

    # -- steps ---------------------------------------------------------------------------------
    def _ensure_headless_service(self, lws: Object) -> None:
        name, ns = _name(lws), _ns(lws)
        if self._api.get("services", name, ns) is not None:
            return
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner_reference(lws)]},
            "spec": {"clusterIP": "None", "selector": {NAME: name}},
        }
        self._api.put("services", service)

    def _recreate_restarted_groups(self, lws: Object, pods: list[Object]) -> bool:
        policy = _template(lws).get("restartPolicy") or "RecreateGroupOnPodRestart"
        leaders = _leaders(pods)
        deleted = False
        for pod in pods:
            failed = (pod.get("status") or {}).get("phase") == "Failed"
            if not (_restarted(pod) or pod["metadata"].get("deletionTimestamp") or failed):
                continue
            if policy != "RecreateGroupOnPodRestart":
                if failed:  # the StatefulSet controller replaces a failed pod
                    self._api.remove("pods", pod["metadata"]["name"], _ns(pod))
                    deleted = True
                continue
            leader = leaders.get(_group(pod))
            if leader is None or not _same_group(pod, leader):
                continue  # a worker of a group already gone, left for the garbage collector
            if not leader["metadata"].get("deletionTimestamp"):
                self._delete_foreground(leader)
                deleted = True
        return deleted

    def _scale(self, lws: Object, pods: list[Object]) -> None:
        replicas = _replicas(lws)
        leaders = _leaders(pods)
        for group, leader in sorted(leaders.items(), reverse=True):
            if group >= replicas:  # the leader StatefulSet scales down from the top
                self._api.remove("pods", leader["metadata"]["name"], _ns(leader))
        for group in range(replicas):
            if group not in leaders:
                self._api.put("pods", self._leader_pod(lws, group))

    def _roll(self, lws: Object, pods: list[Object]) -> None:
        """Move one group at a time onto the current revision, highest index first, and
        only while every other wanted group is ready (maxUnavailable 1)."""
        revision = _revision(lws)
        replicas = _replicas(lws)
        leaders = _leaders(pods)
        stale = [
            g for g, p in leaders.items() if g < replicas and _labels(p).get(REVISION) != revision
        ]
        if not stale:
            return
        unready = [g for g in range(replicas) if not self._group_ready(lws, g, pods)]
        target = max(stale)
        if not unready or unready == [target]:
            leader = leaders[target]
            if not leader["metadata"].get("deletionTimestamp"):
                self._delete_foreground(leader)

    def _create_workers(self, lws: Object, pods: list[Object]) -> None:
        size = _size(lws)
        names = {p["metadata"]["name"] for p in pods}
        leader_ready = lws["spec"].get("startupPolicy") == "LeaderReady"
        for leader in _leaders(pods).values():
            if leader["metadata"].get("deletionTimestamp"):
                continue  # never start workers for a leader being deleted (pod_controller.go)
            if leader_ready and not _pod_ready(leader):
                continue
            for index in range(1, size):
                if f"{leader['metadata']['name']}-{index}" not in names:
                    self._api.put("pods", self._worker_pod(lws, leader, index))

    def _update_status(self, lws: Object, pods: list[Object]) -> None:
        replicas, revision = _replicas(lws), _revision(lws)
        # A group whose worker StatefulSet does not exist yet is left out of the counts
        # (updateConditions: `continue` when the worker sts is not found).
        leaders = {g: p for g, p in _leaders(pods).items() if self._has_workers(lws, g, pods)}
        ready = [g for g in leaders if self._group_ready(lws, g, pods)]
        updated = [g for g in leaders if self._group_updated(lws, g, pods, revision)]
        wanted = range(replicas)
        status = copy.deepcopy(lws.get("status") or {})
        status.update(
            replicas=len(_leaders(pods)),
            readyReplicas=len(ready),
            updatedReplicas=len(updated),
            observedGeneration=lws["metadata"].get("generation", 1),
            hpaPodSelector=f"{NAME}={_name(lws)},{WORKER}=0",
        )
        if any(g not in updated for g in wanted if g in leaders):
            kinds = ["UpdateInProgress", "Progressing"]
        elif all(g in ready for g in wanted):
            kinds = ["Available"]
        else:
            kinds = ["Progressing"]
        changed = [k for k in kinds if _set_condition(status, k)]
        if status != lws.get("status"):
            self._api.set_status("leaderworkersets", _name(lws), status, _ns(lws))
        if changed:
            reason, message = _CONDITIONS[kinds[0]]
            suffix = f", with {len(ready)} groups ready of total {replicas} groups"
            self._emit(lws, reason, message + suffix, False)

    # -- pods ----------------------------------------------------------------------------------
    def _leader_pod(self, lws: Object, group: int) -> Object:
        template = _template(lws).get("leaderTemplate") or _template(lws)["workerTemplate"]
        name = f"{_name(lws)}-{group}"
        labels = {
            NAME: _name(lws),
            WORKER: "0",
            GROUP: str(group),
            GROUP_KEY: hashlib.sha1(f"{_ns(lws)}/{name}".encode()).hexdigest(),
            REVISION: _revision(lws),
            "statefulset.kubernetes.io/pod-name": name,
            "apps.kubernetes.io/pod-index": str(group),
        }
        return self._pod(lws, template, name, labels, {}, owner_reference(lws))

    def _worker_pod(self, lws: Object, leader: Object, index: int) -> Object:
        template = _template(lws)["workerTemplate"]
        name = f"{leader['metadata']['name']}-{index}"
        leader_labels = _labels(leader)
        labels = {key: leader_labels[key] for key in (NAME, GROUP, GROUP_KEY, REVISION)}
        labels |= {WORKER: str(index), "statefulset.kubernetes.io/pod-name": name}
        labels["apps.kubernetes.io/pod-index"] = str(index)
        annotations = {LEADER_NAME: leader["metadata"]["name"]}
        return self._pod(lws, template, name, labels, annotations, owner_reference(leader))

    def _pod(
        self,
        lws: Object,
        template: Object,
        name: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        owner: Object,
    ) -> Object:
        metadata = copy.deepcopy(template.get("metadata") or {})
        spec = copy.deepcopy(template.get("spec") or {})
        subdomain = _name(lws)
        if ((lws["spec"].get("networkConfig") or {}).get("subdomainPolicy")) == "UniquePerReplica":
            subdomain = f"{_name(lws)}-{labels[GROUP]}"
        spec.update(hostname=name, subdomain=subdomain)
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        injected = [
            {
                "name": "LWS_LEADER_ADDRESS",
                "value": f"{_name(lws)}-{labels[GROUP]}.{subdomain}.{_ns(lws)}",
            },
            {"name": "LWS_GROUP_SIZE", "value": str(_size(lws))},
            {"name": "LWS_WORKER_INDEX", "value": labels[WORKER]},
        ]
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            ours = {e["name"] for e in injected}
            container["env"] = [
                *injected,
                *(e for e in container.get("env") or [] if e["name"] not in ours),
            ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": _ns(lws),
                "labels": {**(metadata.get("labels") or {}), **labels},
                "annotations": {
                    **(metadata.get("annotations") or {}),
                    SIZE: str(_size(lws)),
                    **annotations,
                },
                "ownerReferences": [owner],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }

    def _delete_foreground(self, pod: Object) -> None:
        """DELETE with propagationPolicy Foreground, as the pod controller sends it: the
        object stays, marked, until the garbage collector has removed its dependents."""
        current = self._api.get("pods", pod["metadata"]["name"], _ns(pod))
        if current is None or current["metadata"].get("deletionTimestamp"):
            return
        finalizers = current["metadata"].setdefault("finalizers", [])
        if "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        current["metadata"]["deletionTimestamp"] = now()
        current["metadata"]["deletionGracePeriodSeconds"] = 0
        self._api.put("pods", current)

    def _pods_of(self, lws: Object) -> list[Object]:
        pods = self._api.objects("pods", _ns(lws))
        return [p for p in pods if _labels(p).get(NAME) == _name(lws)]

    def _group_ready(self, lws: Object, group: int, pods: list[Object]) -> bool:
        members = [
            p for p in pods if _group(p) == group and not p["metadata"].get("deletionTimestamp")
        ]
        leader = next((p for p in members if _labels(p).get(WORKER) == "0"), None)
        if leader is None or (leader.get("status") or {}).get("phase") != "Running":
            return False
        return len(members) == _size(lws) and all(_pod_ready(p) for p in members)

    def _has_workers(self, lws: Object, group: int, pods: list[Object]) -> bool:
        return _size(lws) == 1 or any(
            _group(p) == group and _labels(p).get(WORKER) != "0" for p in pods
        )

    def _group_updated(self, lws: Object, group: int, pods: list[Object], revision: str) -> bool:
        members = [p for p in pods if _group(p) == group]
        return len(members) >= _size(lws) and all(
            _labels(p).get(REVISION) == revision for p in members
        )


_CONDITIONS = {
    "Available": ("AllGroupsReady", "All replicas are ready"),
    "Progressing": ("GroupsProgressing", "Replicas are progressing"),
    "UpdateInProgress": ("GroupsUpdating", "Rolling Upgrade is in progress"),
}
_EXCLUSIVE = {
    "Available": {"Progressing", "UpdateInProgress"},
    "Progressing": {"Available"},
    "UpdateInProgress": {"Available"},
}


def _set_condition(status: Object, kind: str) -> bool:
    """LWS setCondition: add the condition as True (or turn it True), and turn False an
    exclusive condition that is True. Whether anything changed."""
    conditions = status.setdefault("conditions", [])
    changed = False
    reason, message = _CONDITIONS[kind]
    new = {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }
    found = False
    for index, current in enumerate(conditions):
        if current["type"] == kind:
            found = True
            if current["status"] != "True":
                conditions[index], changed = new, True
        elif current["type"] in _EXCLUSIVE[kind] and current["status"] == "True":
            conditions[index] = {**current, "status": "False"}
            changed = True
    if not found:
        conditions.append(new)
        changed = True
    return changed


def _restarted(pod: Object) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") not in ("Running", "Pending"):
        return False
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return any(int(s.get("restartCount") or 0) > 0 for s in statuses)


def _same_group(pod: Object, leader: Object) -> bool:
    if pod is leader or pod["metadata"]["uid"] == leader["metadata"]["uid"]:
        return True
    owners = {r.get("uid") for r in pod["metadata"].get("ownerReferences") or []}
    return leader["metadata"]["uid"] in owners


def _pod_ready(pod: Object) -> bool:
    ready = condition_of(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def _leaders(pods: list[Object]) -> dict[int, Object]:
    return {_group(p): p for p in pods if _labels(p).get(WORKER) == "0" and _group(p) >= 0}


def _group(pod: Object) -> int:
    value = _labels(pod).get(GROUP, "")
    return int(value) if value.isdigit() else -1


def _labels(obj: Object) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _template(lws: Object) -> Object:
    return dict(lws["spec"]["leaderWorkerTemplate"])


def _size(lws: Object) -> int:
    return int(_template(lws).get("size") or 1)


def _replicas(lws: Object) -> int:
    replicas = lws["spec"].get("replicas")
    return 1 if replicas is None else int(replicas)  # the CRD's default


def _revision(lws: Object) -> str:
    return safe_hash(json.dumps(_template(lws), sort_keys=True))


def _name(obj: Object) -> str:
    return str(obj["metadata"]["name"])


def _ns(obj: Object) -> str:
    return str(obj["metadata"].get("namespace") or "default")
