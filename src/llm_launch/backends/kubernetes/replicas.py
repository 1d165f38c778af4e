"""Hand a workload's `spec.replicas` over to its HorizontalPodAutoscaler without dropping
serving capacity.

Caller: `apply.apply_objects`, before it applies a workload that `render` left without
`replicas` because an HPA targets it. Next hop: `client.KubeClient.apply`.

Why: under server-side apply, a field its only manager stops sending is removed and then
defaulted ("Server-Side Apply", field management: "If the field is not owned by any other
field managers, it is either deleted from the live object or reset to its default value,
if it has one"); `replicas` defaults to 1 for a Deployment and for a LeaderWorkerSet (its
CRD). So applying the autoscaled manifest over one that set `replicas: 3` would delete two
serving groups before the HPA acts ("Horizontal Pod Autoscaling", "Migrating Deployments
and StatefulSets to horizontal autoscaling": "the removal of spec.replicas may incur a
one-time degradation of Pod counts as the default value of this key is 1").

What it does, as "Server-Side Apply", "Transferring ownership" documents it:
- while llm-launch still owns `spec.replicas`, a second field manager
  (`llm-launch-replicas-handover`) applies a manifest holding only the current value,
  without force, so the two share the field; the workload is then applied without it and
  the value stays. A 409 means another manager (the HPA controller) owns it already, and
  there is nothing to hand over. Once the HPA controller writes a new value through
  `/scale`, it owns the field and the handover manager's entry disappears;
- a workload created autoscaled is created at the HPA's `minReplicas` (never at the
  default 1 while the HPA has not acted yet), then handed over the same way.
Once handed over (llm-launch owns no `replicas`), nothing is written: resyncs are free.
Turning autoscaling off needs no handover: `render` sends `replicas` again (with force it
takes the field back from the HPA controller), and `apply_objects` deletes the HPA before
it applies the workload, so the two never fight over it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from llm_launch.backends.kubernetes.client import FIELD_MANAGER, KubeClient, Resource
from llm_launch.backends.kubernetes.errors import ObjectConflict

Object = dict[str, Any]
HANDOVER_MANAGER = "llm-launch-replicas-handover"


def autoscaled_minimums(objects: Sequence[Object]) -> dict[tuple[str, str], int]:
    """(kind, name) of each workload an HPA among `objects` scales -> its minReplicas."""
    found = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if obj.get("kind") == "HorizontalPodAutoscaler" and target.get("name"):
            found[(str(target.get("kind")), str(target["name"]))] = int(spec.get("minReplicas", 1))
    return found


async def hand_over(
    client: KubeClient,
    resource: Resource,
    namespace: str,
    obj: Object,
    current: Object | None,
    min_replicas: int,
) -> None:
    """Make sure applying `obj` (no `replicas`) over `current` keeps the replica count."""
    if "replicas" in (obj.get("spec") or {}):
        return
    if current is None:
        created = copy.deepcopy(obj)
        created["spec"]["replicas"] = min_replicas
        current = await client.apply(resource, namespace, created)
    if not owns_replicas(current, FIELD_MANAGER):
        return
    replicas = (current.get("spec") or {}).get("replicas")
    if replicas is None:
        return
    only_replicas = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"], "namespace": namespace},
        "spec": {"replicas": replicas},
    }
    try:
        await client.apply(
            resource, namespace, only_replicas, manager=HANDOVER_MANAGER, force=False
        )
    except ObjectConflict:
        return  # the HPA controller (or someone) owns it already: nothing to hand over


def owns_replicas(obj: Object, manager: str) -> bool:
    """Whether `manager`'s Apply entry in managedFields holds `spec.replicas`."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            return True
    return False
