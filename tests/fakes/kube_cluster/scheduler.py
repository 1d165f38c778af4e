"""The simulated kube-scheduler: binds each pending pod to a node it fits, or says why none.

Caller: `FakeCluster.tick`. It filters the configured nodes as the default plugins do, in
their order, stopping at a node's first failing plugin (kubernetes pkg/scheduler
framework/runtime RunFilterPlugins; the default plugin order in pkg/scheduler/apis/config/
v1/default_plugins.go puts TaintToleration, then NodeAffinity, before NodeResourcesFit):

- TaintToleration: "node(s) had untolerated taint {<key>: <value>}" for a NoSchedule or
  NoExecute taint no toleration matches (plugins/tainttoleration/taint_toleration.go;
  toleration matching as core/v1 Toleration.ToleratesTaint: empty key with Exists matches
  every taint, empty effect matches every effect, operator defaults to Equal);
- NodeAffinity: "node(s) didn't match Pod's node affinity/selector" when the nodeSelector's
  labels are missing (plugins/nodeaffinity/node_affinity.go ErrReasonPod);
- NodeResourcesFit: one "Insufficient <resource>" per short resource
  (plugins/noderesources/fit.go), counting the requests of the pods already bound there.

A pod no node fits stays Pending with PodScheduled=False, reason Unschedulable, and the
FitError message (pkg/scheduler/framework/types.go FitError.Error): "0/<N> nodes are
available: " + the "<count> <reason>" histogram sorted as strings and joined by ", " + "."
+ " preemption: " + the same form for DefaultPreemption's verdicts: "No preemption victims
found for incoming pod" where freeing the node could help (every pod here has the same
priority, so there are never victims), "Preemption is not helpful for scheduling" where it
could not (taints, selector, a request larger than the node's allocatable)
(plugins/defaultpreemption/default_preemption.go). A FailedScheduling Warning event carries
the same message; a bound pod gets PodScheduled=True and a Scheduled event ("Successfully
assigned <ns>/<pod> to <node>", pkg/scheduler/schedule_one.go).

Not imitated: preemption itself, priorities, pod (anti-)affinity, topology spread, node
affinity expressions other than nodeSelector, volumes, extended resources other than
nvidia.com/gpu, and the pods-per-node limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from tests.fakes.kube_cluster.model import Node, Object, Taint, requests_of

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"


@dataclass(frozen=True)
class Verdict:
    """Where a pod goes (`node`), or why it cannot go anywhere (`message`)."""

    node: str | None
    message: str = ""


def schedule(pod: Object, nodes: Iterable[Node], bound: Iterable[Object]) -> Verdict:
    """Pick the first node (in the configured order) that passes every filter."""
    nodes = list(nodes)
    used = _used(bound)
    reasons: dict[str, int] = {}
    preemption: dict[str, int] = {}
    for node in nodes:
        failed, resolvable = _filter(pod, node, used.get(node.name, {}))
        if not failed:
            return Verdict(node.name)
        for reason in failed:
            reasons[reason] = reasons.get(reason, 0) + 1
        verdict = NO_VICTIMS if resolvable else NOT_HELPFUL
        preemption[verdict] = preemption.get(verdict, 0) + 1
    return Verdict(None, fit_error(len(nodes), reasons, preemption))


def fit_error(count: int, reasons: dict[str, int], preemption: dict[str, int]) -> str:
    """FitError.Error() with DefaultPreemption's PostFilter message appended."""
    if count == 0:
        # pkg/scheduler/schedule_one.go: ErrNoNodesAvailable
        return "no nodes available to schedule pods"
    histogram = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
    verdicts = ", ".join(sorted(f"{n} {r}" for r, n in preemption.items()))
    return (
        f"0/{count} nodes are available: {histogram}."
        f" preemption: 0/{count} nodes are available: {verdicts}."
    )


def _used(bound: Iterable[Object]) -> dict[str, dict[str, Fraction]]:
    """Requests of the live, non-terminal pods bound to each node."""
    used: dict[str, dict[str, Fraction]] = {}
    for pod in bound:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        total = used.setdefault(node, {})
        for name, value in requests_of(pod).items():
            total[name] = total.get(name, Fraction(0)) + value
    return used


def _filter(pod: Object, node: Node, used: dict[str, Fraction]) -> tuple[list[str], bool]:
    """The failing plugin's reasons on this node, and whether preemption could help."""
    spec = pod.get("spec") or {}
    taint = next((t for t in node.taints if not _tolerated(t, spec.get("tolerations") or [])), None)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"], False
    selector = spec.get("nodeSelector") or {}
    if any(node.labels.get(k) != v for k, v in selector.items()):
        return [AFFINITY], False
    allocatable = node.allocatable()
    short, resolvable = [], True
    for name, wanted in sorted(requests_of(pod).items()):
        if name not in allocatable:
            continue  # resources the simulation does not track
        if used.get(name, Fraction(0)) + wanted > allocatable[name]:
            short.append(f"Insufficient {name}")
            resolvable = resolvable and wanted <= allocatable[name]
    return short, resolvable


def _tolerated(taint: Taint, tolerations: list[Object]) -> bool:
    if taint.effect not in ("NoSchedule", "NoExecute"):
        return True  # PreferNoSchedule only scores
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.effect:
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" and (not key or key == taint.key):
            return True
        if (
            operator == "Equal"
            and key == taint.key
            and (toleration.get("value") or "") == taint.value
        ):
            return True
    return False
