"""The simulated kubelet: runs the containers of pods bound to a node, one step per tick.

Caller: `FakeCluster.tick`, with the pods bound to a node and the rule (`Behaviour`) that
matches each. Next hop: the pod's status, written with `FakeKubeApi.set_status`, and
Events through the `emit` callback.

What it writes, as the kubelet's status manager does (kubernetes pkg/kubelet/
kubelet_pods.go generateAPIPodStatus, pkg/kubelet/status; docs "Pod Lifecycle",
https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/):

- when the pod lands: phase Pending, hostIP, podIP, startTime; conditions
  PodReadyToStartContainers=False, Initialized=True, ContainersReady=False and Ready=False
  (reason ContainersNotReady, "containers with unready status: [...]"); each container
  waiting with reason ContainerCreating;
- after `create_ticks`: phase Running, containers running (startedAt, started=true);
- after `ready_ticks` more: containers ready, ContainersReady=True, Ready=True; a rule with
  `ready=False` keeps them unready and records an Unhealthy Warning ("Readiness probe
  failed: HTTP probe failed with statuscode: 503", pkg/kubelet/prober/prober.go);
- an image pull error: waiting ErrImagePull (a Failed event "Failed to pull image ..."),
  then ImagePullBackOff ('Back-off pulling image "<image>"', a BackOff event);
- a container that exits (a crash rule, `crash`, `fail`): one tick with state.terminated
  (exitCode, reason) and the pod unready, then, since these pods' restartPolicy is Always,
  the kubelet restarts it: restartCount + 1, lastState.terminated, and from the second
  restart on, waiting CrashLoopBackOff ("back-off <n>s restarting failed container=<c>
  pod=<pod>_<ns>(<uid>)") for a doubling number of ticks, with a BackOff Warning event.
  The running container's log becomes its `previous` log (`kubectl logs --previous`).

Simplified: probes are not run (a rule says when readiness passes), every container of a
pod follows the same rule, the back-off is counted in ticks, not 10 s doubling to 5 min,
and a pod being deleted is left to the API server (no graceful termination is played).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.kube_cluster.model import Behaviour, Object, now, set_condition

Emit = Callable[[Object, str, str, bool, str], None]  # pod, reason, message, warning, host


@dataclass
class _Exit:
    code: int
    reason: str
    started: str = ""
    finished: str = ""


@dataclass
class _Run:
    """The kubelet's memory of one pod (by uid)."""

    ip: str
    started: str = field(default_factory=now)
    stage: str = "creating"  # creating, pulling-failed, running, exited, backoff
    ticks: int = 0
    restarts: int = 0
    ready: bool = False
    exit: _Exit | None = None  # the last termination
    pending_exit: _Exit | None = None  # a crash asked for by a test
    warned: set[str] = field(default_factory=set)
    logs: dict[str, str] = field(default_factory=dict)


class Kubelet:
    def __init__(self, api: FakeKubeApi, emit: Emit) -> None:
        self._api = api
        self._emit = emit
        self._runs: dict[str, _Run] = {}
        self._addresses = 0

    def crash(self, uid: str, exit_code: int, reason: str) -> bool:
        run = self._runs.get(uid)
        if run is None or run.stage != "running":
            return False
        run.pending_exit = _Exit(exit_code, reason)
        return True

    def set_log(self, pod: Object, container: str, text: str) -> None:
        run = self._runs.get(pod["metadata"]["uid"])
        if run is not None:
            run.logs[container] = text
        self._api.set_log(pod["metadata"]["name"], container, text)

    def step(self, pod: Object, behaviour: Behaviour) -> None:
        """Advance one bound, live pod by one tick and write its status if it changed."""
        uid = pod["metadata"]["uid"]
        run = self._runs.get(uid)
        if run is None:
            self._addresses += 1
            run = self._runs[uid] = _Run(
                ip=f"10.0.{self._addresses // 250}.{self._addresses % 250}"
            )
        else:
            self._advance(pod, run, behaviour)
        status = self._status(pod, run)
        if status != pod.get("status"):
            self._api.set_status("pods", pod["metadata"]["name"], status, _ns(pod))

    def forget(self, live_uids: set[str]) -> None:
        self._runs = {uid: run for uid, run in self._runs.items() if uid in live_uids}

    # -- the state machine -------------------------------------------------------------------
    def _advance(self, pod: Object, run: _Run, behaviour: Behaviour) -> None:
        run.ticks += 1
        if run.stage == "creating" and run.ticks >= behaviour.create_ticks:
            if behaviour.pull_error:
                self._pull_failed(pod, run, behaviour.pull_error)
            else:
                self._enter(run, "running")
        elif run.stage == "pulling-failed":
            self._pull_failed(pod, run, behaviour.pull_error or "ImagePullBackOff")
        elif run.stage == "running":
            self._run(pod, run, behaviour)
        elif run.stage == "exited":
            self._restart(pod, run)
        elif run.stage == "backoff" and run.ticks >= 2 ** min(run.restarts - 1, 5):
            self._enter(run, "running")

    def _run(self, pod: Object, run: _Run, behaviour: Behaviour) -> None:
        crash_due = behaviour.crash_after is not None and run.ticks >= behaviour.crash_after
        if run.pending_exit is not None or crash_due:
            ending = run.pending_exit or _Exit(behaviour.exit_code, behaviour.reason)
            run.exit = _Exit(ending.code, ending.reason, run.started, now())
            run.pending_exit = None
            run.ready = False
            self._enter(run, "exited")
            return
        if run.ticks >= behaviour.ready_ticks and behaviour.ready:
            run.ready = True
        elif run.ticks >= behaviour.ready_ticks and "Unhealthy" not in run.warned:
            run.warned.add("Unhealthy")
            message = "Readiness probe failed: HTTP probe failed with statuscode: 503"
            self._emit(pod, "Unhealthy", message, True, _node(pod))

    def _restart(self, pod: Object, run: _Run) -> None:
        run.restarts += 1
        for container in _names(pod):
            text = run.logs.get(container)
            if text is not None:  # the exited run's log is now the previous one; the new
                # run logs the same (a test sets what each run of the container writes)
                self._api.set_log(pod["metadata"]["name"], container, text, previous=True)
        if run.restarts == 1:
            self._enter(run, "running")
            return
        self._enter(run, "backoff")
        for container in _names(pod):
            message = (
                f"Back-off restarting failed container {container} in pod "
                f"{pod['metadata']['name']}_{_ns(pod)}({pod['metadata']['uid']})"
            )
            self._emit(pod, "BackOff", message, True, _node(pod))

    def _pull_failed(self, pod: Object, run: _Run, reason: str) -> None:
        first = run.stage != "pulling-failed"
        if first:
            self._enter(run, "pulling-failed")
        for container in (pod.get("spec") or {}).get("containers") or []:
            image = container.get("image", "")
            if first:
                message = f'Failed to pull image "{image}": {reason}'
                self._emit(pod, "Failed", message, True, _node(pod))
            else:
                self._emit(pod, "BackOff", f'Back-off pulling image "{image}"', False, _node(pod))

    @staticmethod
    def _enter(run: _Run, stage: str) -> None:
        run.stage, run.ticks = stage, 0
        if stage == "running":
            run.started = now()

    # -- the status it reports ---------------------------------------------------------------
    def _status(self, pod: Object, run: _Run) -> Object:
        old = copy.deepcopy(pod.get("status") or {})
        spec_containers = (pod.get("spec") or {}).get("containers") or []
        containers = [self._container(pod, c, run) for c in spec_containers]
        # Pending until a container has started; Running from then on (also while one
        # restarts: restartPolicy Always never makes the pod Failed).
        running = run.stage == "running" or run.restarts > 0 or run.stage in ("exited", "backoff")
        status: Object = {
            "phase": "Running" if running else "Pending",
            "hostIP": _host_ip(pod),
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": old.get("startTime") or now(),
            "qosClass": "Guaranteed",
            "conditions": old.get("conditions") or [],
            "containerStatuses": containers,
        }
        unready = [c["name"] for c in containers if not c["ready"]]
        started = run.stage != "creating" and run.stage != "pulling-failed"
        set_condition(status, "PodReadyToStartContainers", "True" if started else "False")
        set_condition(status, "Initialized", "True")
        if unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            set_condition(status, "ContainersReady", "False", "ContainersNotReady", message)
            set_condition(status, "Ready", "False", "ContainersNotReady", message)
        else:
            set_condition(status, "ContainersReady", "True")
            set_condition(status, "Ready", "True")
        set_condition(status, "PodScheduled", "True")
        return status

    def _container(self, pod: Object, container: Object, run: _Run) -> Object:
        name, image = container["name"], container.get("image", "")
        status: Object = {"name": name, "image": image, "imageID": "", "restartCount": run.restarts}
        status["ready"] = run.ready and run.stage == "running"
        status["started"] = run.stage == "running"
        if run.stage == "creating":
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif run.stage == "pulling-failed":
            reason = "ErrImagePull" if run.ticks == 0 else "ImagePullBackOff"
            message = f'Back-off pulling image "{image}"' if run.ticks else "rpc error: pull failed"
            status["state"] = {"waiting": {"reason": reason, "message": message}}
        elif run.stage == "exited":
            status["state"] = {"terminated": self._terminated(run)}
        elif run.stage == "backoff":
            seconds = 10 * 2 ** min(run.restarts - 2, 5)
            where = f"{pod['metadata']['name']}_{_ns(pod)}({pod['metadata']['uid']})"
            message = f"back-off {seconds}s restarting failed container={name} pod={where}"
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        else:
            status["state"] = {"running": {"startedAt": run.started}}
            status["imageID"] = f"{image}@sha256:{'0' * 64}"
            status["containerID"] = f"containerd://{run.ip.replace('.', '')}{run.restarts}"
        if run.exit is not None and run.stage != "exited":
            status["lastState"] = {"terminated": self._terminated(run)}
        else:
            status["lastState"] = {}
        return status

    @staticmethod
    def _terminated(run: _Run) -> Object:
        assert run.exit is not None
        return {
            "exitCode": run.exit.code,
            "reason": run.exit.reason,
            "startedAt": run.exit.started,
            "finishedAt": run.exit.finished,
        }


def _names(pod: Object) -> list[str]:
    return [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]


def _node(pod: Object) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _host_ip(pod: Object) -> str:
    return f"192.168.0.{sum(map(ord, _node(pod))) % 250 + 1}"


def _ns(pod: Object) -> str:
    return str(pod["metadata"].get("namespace") or "default")
