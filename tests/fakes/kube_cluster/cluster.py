"""FakeCluster: the controllers, scheduler and kubelet of a small cluster, ticking inside the
test API server (`tests/fakes/kube_api.py`), through its in-process hooks only.

Callers: integration and end-to-end tests (`FakeCluster(api, nodes=[...]).start()`, or
`tick()` by hand for a step-by-step test). Next hops: `lws.LeaderWorkerSetController`,
`deployment.DeploymentController`, `scheduler.schedule`, `kubelet.Kubelet`, each writing
through `FakeKubeApi.put`/`set_status`/`remove`.

One tick: each LeaderWorkerSet and Deployment is reconciled, then each pending pod is
scheduled, then each bound pod's kubelet takes one step. Everything happens on ticks, in
that order, so a test that polls for a condition sees the same sequence of states every
run; only how many ticks fit between two polls varies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.kube_cluster.deployment import DeploymentController
from tests.fakes.kube_cluster.kubelet import Kubelet
from tests.fakes.kube_cluster.lws import LeaderWorkerSetController
from tests.fakes.kube_cluster.model import Behaviour, Node, Object, Rule, event, now
from tests.fakes.kube_cluster.scheduler import schedule


class FakeCluster:
    def __init__(
        self,
        api: FakeKubeApi,
        nodes: Iterable[Node] = (),
        *,
        namespace: str = "default",
        tick_s: float = 0.02,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.tick_s = tick_s
        self.ticks = 0
        self._nodes = list(nodes)
        self._rules: list[Rule] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: dict[tuple[str, str, str], str] = {}  # (uid, reason, message) -> name
        self._unschedulable: dict[str, str] = {}  # pod uid -> last FailedScheduling message
        self._lws = LeaderWorkerSetController(api, self._emit_about)
        self._deployments = DeploymentController(api)
        self._kubelet = Kubelet(api, self._emit_from_kubelet)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeCluster:
        self._thread = threading.Thread(target=self._run, name="fake-cluster", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        """One step of every controller, the scheduler and every kubelet."""
        with self._lock:
            self.ticks += 1
            for name in self.api.names("leaderworkersets", self.namespace):
                lws = self.api.get("leaderworkersets", name, self.namespace)
                if lws is not None:
                    self._lws.reconcile(lws, self._pods())
            for name in self.api.names("deployments", self.namespace):
                deployment = self.api.get("deployments", name, self.namespace)
                if deployment is not None:
                    self._deployments.reconcile(deployment, self._pods())
            self._schedule(self._pods())
            pods = self._pods()
            self._kubelet.forget({p["metadata"]["uid"] for p in pods})
            for pod in pods:
                spec, metadata = pod.get("spec") or {}, pod["metadata"]
                if spec.get("nodeName") and not metadata.get("deletionTimestamp"):
                    try:
                        self._kubelet.step(pod, self._behaviour(pod))
                    except KeyError:
                        # Deleted (garbage-collected) since it was listed: the API server
                        # answers the kubelet's status update 404, and it moves on.
                        continue

    # -- what a test sets ----------------------------------------------------------------------
    def behave(self, pattern: str = "*", **behaviour: object) -> None:
        """How the kubelet runs pods whose name matches the glob `pattern` (or
        "role:leader" / "role:worker"); the last matching rule wins. Keywords are
        `Behaviour` fields (create_ticks, ready_ticks, ready, pull_error, crash_after,
        exit_code, reason). Applies to pods already running too."""
        with self._lock:
            self._rules.append(Rule(pattern, Behaviour(**behaviour)))  # type: ignore[arg-type]

    def image_pull_error(self, pattern: str = "*", reason: str = "ErrImagePull") -> None:
        self.behave(pattern, pull_error=reason)

    def crash(self, pod: str, *, exit_code: int = 1, reason: str = "Error") -> None:
        """The running containers of `pod` exit (once); the kubelet restarts them."""
        with self._lock:
            found = self.api.get("pods", pod, self.namespace)
            if found is None or not self._kubelet.crash(
                found["metadata"]["uid"], exit_code, reason
            ):
                raise AssertionError(f"pod {pod} is not running, so it cannot crash")

    def fail(self, pod: str, *, exit_code: int = 137, reason: str = "OOMKilled") -> None:
        """The pod's containers fail (by default OOMKilled). These pods have restartPolicy
        Always, so the kubelet restarts them, as after `crash`."""
        self.crash(pod, exit_code=exit_code, reason=reason)

    def evict(self, pod: str, message: str = "The node was low on resource: memory.") -> None:
        """The kubelet evicts the pod: phase Failed, reason Evicted (node-pressure eviction,
        https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/)."""
        with self._lock:
            found = self.api.get("pods", pod, self.namespace)
            if found is None:
                raise AssertionError(f"no pod {pod}")
            status = dict(
                found.get("status") or {}, phase="Failed", reason="Evicted", message=message
            )
            self.api.set_status("pods", pod, status, self.namespace)
            self._emit_about(found, "Evicted", message, True, component="kubelet")

    def set_log(self, pod: str, container: str, text: str) -> None:
        """What each run of `pod`'s `container` logs; the run that exits leaves it as the
        previous log (`kubectl logs --previous`)."""
        with self._lock:
            found = self.api.get("pods", pod, self.namespace)
            if found is None:
                raise AssertionError(f"no pod {pod}")
            self._kubelet.set_log(found, container, text)

    def add_node(self, node: Node) -> None:
        """A node joins (as after a cluster-autoscaler scale-up); pending pods retry."""
        with self._lock:
            self._nodes.append(node)

    def events(self, pod: str | None = None) -> list[Object]:
        """The Events written so far (about `pod` only, when given)."""
        found = self.api.objects("events", self.namespace)
        return [e for e in found if pod is None or e["involvedObject"]["name"] == pod]

    # -- internals -----------------------------------------------------------------------------
    def _pods(self) -> list[Object]:
        return self.api.objects("pods", self.namespace)

    def _behaviour(self, pod: Object) -> Behaviour:
        for rule in reversed(self._rules):
            if rule.matches(pod):
                return rule.behaviour
        return Behaviour()

    def _schedule(self, pods: list[Object]) -> None:
        bound = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
        for pod in pods:
            spec, metadata = pod.get("spec") or {}, pod["metadata"]
            if spec.get("nodeName") or metadata.get("deletionTimestamp"):
                continue
            if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
                continue
            verdict = schedule(pod, self._nodes, bound)
            if verdict.node is None:
                self._unschedulable_pod(pod, verdict.message)
                continue
            pod["spec"]["nodeName"] = verdict.node
            status = dict(pod.get("status") or {})
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
            ] + [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                }
            ]
            pod["status"] = status
            bound.append(self.api.put("pods", pod))
            self._unschedulable.pop(metadata["uid"], None)
            where = f"{metadata.get('namespace', 'default')}/{metadata['name']}"
            message = f"Successfully assigned {where} to {verdict.node}"
            self._emit_about(pod, "Scheduled", message, False, component="default-scheduler")

    def _unschedulable_pod(self, pod: Object, message: str) -> None:
        uid = pod["metadata"]["uid"]
        if self._unschedulable.get(uid) == message:
            return  # nothing changed since the last attempt
        self._unschedulable[uid] = message
        status = dict(pod.get("status") or {}, phase="Pending")
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now(),
        }
        status["conditions"] = [
            c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
        ] + [condition]
        self.api.set_status("pods", pod["metadata"]["name"], status, self.namespace)
        self._emit_about(pod, "FailedScheduling", message, True, component="default-scheduler")

    def _emit_from_kubelet(
        self, pod: Object, reason: str, message: str, warning: bool, host: str
    ) -> None:
        self._emit_about(pod, reason, message, warning, component="kubelet", host=host)

    def _emit_about(
        self,
        involved: Object,
        reason: str,
        message: str,
        warning: bool,
        *,
        component: str = "leaderworkerset",
        host: str | None = None,
    ) -> None:
        """Record an Event; the same reason and message about the same object again bumps
        its count and lastTimestamp, as client-go's EventCorrelator aggregates them."""
        key = (str(involved["metadata"].get("uid")), reason, message)
        name = self._events.get(key)
        existing = self.api.get("events", name, self.namespace) if name else None
        if existing is not None:
            existing["count"] = int(existing.get("count") or 1) + 1
            existing["lastTimestamp"] = now()
            self.api.put("events", existing)
            return
        created = event(involved, reason, message, warning=warning, component=component, host=host)
        self._events[key] = created["metadata"]["name"]
        self.api.put("events", created)
