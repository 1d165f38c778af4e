"""Observed status from a workload and its pods: `backends/kubernetes/status.py`, no HTTP."""

from __future__ import annotations

from typing import Any

from llm_launch.backends.kubernetes.history import Recreations
from llm_launch.backends.kubernetes.status import (
    Evidence,
    Workload,
    crashing_containers,
    observe,
    ready_groups,
)
from llm_launch.domain.status import EndpointStatus
from tests.fakes.kube_api import lws_pod, pod, unschedulable, waiting

EID = "ep-0123456789abcdef"
LWS = "llm-chat"
GPU_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod."
)


def leaderworkerset(
    *, replicas: int | None = 2, size: int = 2, ready: int = 2, updated: int = 2, **meta: Any
) -> dict[str, Any]:
    generation = meta.get("generation", 1)
    spec: dict[str, Any] = {"leaderWorkerTemplate": {"size": size}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {
            "name": LWS,
            "generation": generation,
            "annotations": {"llm-launch.io/generation": str(meta.get("applied", 3))},
        },
        "spec": spec,
        "status": {
            "observedGeneration": meta.get("observed", generation),
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "replicas": replicas,
        },
    }


def lws_workload(obj: dict[str, Any] | None = None, default_replicas: int = 2) -> Workload:
    return Workload("LeaderWorkerSet", LWS, obj, 3, default_replicas)


def group(index: int, *, size: int = 2, ready: bool = True) -> list[dict[str, Any]]:
    return [lws_pod(LWS, index, rank, EID, ready=ready) for rank in range(size)]


def see(
    workload: Workload,
    pods: list[dict[str, Any]],
    logs: dict[tuple[str, str, int], str] | None = None,
    recreations: dict[int, Recreations] | None = None,
    evidence: Evidence | None = None,
) -> Any:
    return observe(workload, pods, logs or {}, recreations or {}, evidence)


LONG_PENDING = Evidence(unschedulable_timeout_s=0)  # every unschedulable pod is overdue


class TestReady:
    def test_every_group_ready_and_counted_is_ready(self) -> None:
        seen = see(lws_workload(leaderworkerset()), group(0) + group(1))
        assert (seen.status, seen.reason) == (EndpointStatus.READY, "ready")
        assert (seen.available_workers, seen.unavailable_workers) == (2, 0)

    def test_an_autoscaled_workload_wants_what_its_replicas_say_not_min_workers(self) -> None:
        obj = leaderworkerset(replicas=3, ready=3, updated=3)
        seen = see(lws_workload(obj, default_replicas=1), group(0) + group(1) + group(2))
        assert seen.status is EndpointStatus.READY
        assert seen.available_workers == 3

    def test_a_workload_without_replicas_wants_the_default(self) -> None:
        seen = see(lws_workload(leaderworkerset(replicas=None, ready=1, updated=1), 1), group(0))
        assert seen.status is EndpointStatus.READY

    def test_past_recreations_are_noted_on_a_ready_endpoint(self) -> None:
        history = {1: Recreations(3, "container engine of pod llm-chat-1-1 exited with code 1")}
        seen = see(lws_workload(leaderworkerset()), group(0) + group(1), recreations=history)
        assert seen.status is EndpointStatus.READY
        assert "group 1 was recreated 3 times" in (seen.reason or "")

    def test_a_deployment_counts_each_ready_pod_as_a_group(self) -> None:
        deployment = leaderworkerset(replicas=2)
        labels = {"llm-launch.io/endpoint-id": EID}
        pods = [pod("llm-chat-abc", labels, ready=True), pod("llm-chat-def", labels, ready=True)]
        seen = see(Workload("Deployment", LWS, deployment, 3, 2), pods)
        assert seen.status is EndpointStatus.READY
        assert ready_groups(Workload("Deployment", LWS, deployment, 3, 2), pods) == 2


class TestInProgress:
    def test_no_workload_yet_waits_for_it(self) -> None:
        seen = see(lws_workload(None), [])
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert "waiting for the LeaderWorkerSet llm-chat to be created" in (seen.reason or "")
        assert (seen.available_workers, seen.unavailable_workers) == (0, 2)

    def test_a_leader_not_ready_waits_for_its_generation_check(self) -> None:
        pods = [*group(0), lws_pod(LWS, 1, 0, EID, ready=False), lws_pod(LWS, 1, 1, EID)]
        seen = see(lws_workload(leaderworkerset(ready=1)), pods)
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert "group 1: waiting for the leader llm-chat-1" in (seen.reason or "")
        assert (seen.available_workers, seen.unavailable_workers) == (1, 1)

    def test_a_group_with_missing_pods_says_how_many_exist(self) -> None:
        seen = see(lws_workload(leaderworkerset(ready=1)), group(0) + group(1)[:1])
        assert "group 1: 1 of 2 pods created" in (seen.reason or "")

    def test_a_container_being_created_is_named(self) -> None:
        creating = [waiting("engine", "ContainerCreating")]
        pods = [*group(0), lws_pod(LWS, 1, 0, EID, statuses=creating), *group(1)[1:]]
        seen = see(lws_workload(leaderworkerset(ready=1)), pods)
        assert "pod llm-chat-1 (leader) is ContainerCreating" in (seen.reason or "")

    def test_a_generation_not_yet_applied_says_so(self) -> None:
        seen = see(lws_workload(leaderworkerset(applied=2)), group(0) + group(1))
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert "applying generation 3" in (seen.reason or "")

    def test_a_controller_that_has_not_seen_the_change_is_waited_for(self) -> None:
        seen = see(lws_workload(leaderworkerset(generation=2, observed=1)), group(0) + group(1))
        assert "LeaderWorkerSet controller" in (seen.reason or "")

    def test_a_rolling_update_counts_updated_groups(self) -> None:
        # LWS rolls from the highest index down: group 1 is on the new revision already.
        rolled = [lws_pod(LWS, 1, rank, EID, revision="rev-2", ready=True) for rank in (0, 1)]
        seen = see(lws_workload(leaderworkerset(updated=1)), group(0) + rolled)
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert "rolling out: 1 of 2 groups updated, 2 ready" in (seen.reason or "")
        assert seen.available_workers == 2

    def test_a_group_being_recreated_is_no_rollout_though_the_controller_counts_it_out(
        self,
    ) -> None:
        """LWS leaves a group out of updatedReplicas until its worker StatefulSet exists
        again: with every pod on one revision, that is a recreation, said as such."""
        history = {1: Recreations(1, "container engine of pod llm-chat-1-1 exited", 1)}
        pods = [*group(0), lws_pod(LWS, 1, 0, EID, ready=False)]
        seen = see(lws_workload(leaderworkerset(ready=1, updated=1)), pods, recreations=history)
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert (seen.reason or "").startswith("group 1: 1 of 2 pods created")
        assert "recreated 1 time since it was last ready" in (seen.reason or "")

    def test_terminating_pods_do_not_count(self) -> None:
        pods = group(0) + group(1)
        for terminating in pods[2:]:
            terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        seen = see(lws_workload(leaderworkerset(ready=1)), pods)
        assert "group 1: 0 of 2 pods created" in (seen.reason or "")

    def test_a_group_recreated_once_is_not_yet_a_failure(self) -> None:
        history = {1: Recreations(1, None)}
        seen = see(lws_workload(leaderworkerset(ready=1)), group(0), recreations=history)
        assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS


class TestFailed:
    def test_pending_for_gpus_names_the_shortage_and_the_fix(self) -> None:
        pending = lws_pod(
            LWS, 1, 1, EID, phase="Pending", statuses=[], scheduled=unschedulable(GPU_MESSAGE),
            requests={"nvidia.com/gpu": "8"},
        )  # fmt: skip
        pods = [*group(0), group(1)[0], pending]
        seen = see(lws_workload(leaderworkerset(ready=1)), pods, evidence=LONG_PENDING)
        assert seen.status is EndpointStatus.UPDATE_FAILED
        reason = seen.reason or ""
        assert "group 1 cannot be scheduled: pod llm-chat-1-1 (worker 1)" in reason
        assert "needs 8 nvidia.com/gpu" in reason
        assert "0/3 nodes are available: 3 Insufficient nvidia.com/gpu" in reason
        assert "lower gpus" in reason
        assert (seen.available_workers, seen.unavailable_workers) == (1, 1)

    def test_pending_for_memory_points_at_memory(self) -> None:
        message = "0/2 nodes are available: 2 Insufficient memory."
        pending = lws_pod(
            LWS, 0, 0, EID, phase="Pending", statuses=[], scheduled=unschedulable(message),
            requests={"memory": "900Gi"},
        )  # fmt: skip
        seen = see(lws_workload(leaderworkerset(ready=0)), [pending], evidence=LONG_PENDING)
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert "needs 900Gi memory" in (seen.reason or "")
        assert "Lower memory" in (seen.reason or "")

    def test_other_scheduling_failures_quote_the_scheduler(self) -> None:
        message = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
        pending = lws_pod(
            LWS, 0, 0, EID, phase="Pending", statuses=[], scheduled=unschedulable(message)
        )
        seen = see(lws_workload(leaderworkerset(ready=0)), [pending], evidence=LONG_PENDING)
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert "didn't match Pod's node affinity" in (seen.reason or "")
        assert "gpu_type" in (seen.reason or "")

    def test_an_image_that_cannot_be_pulled_is_named(self) -> None:
        image = "ghcr.io/llm-launch/sglang:v9.9-typo"
        message = f'Back-off pulling image "{image}"'
        broken = [waiting("engine", "ImagePullBackOff", message, image=image)]
        seen = see(
            lws_workload(leaderworkerset(ready=0)), [lws_pod(LWS, 0, 0, EID, statuses=broken)]
        )
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert f"cannot pull image '{image}'" in (seen.reason or "")
        assert "inference_framework_image_tag" in (seen.reason or "")

    def test_err_image_pull_is_a_failure_too(self) -> None:
        broken = [waiting("engine", "ErrImagePull", "manifest unknown", image="repo/x:1")]
        seen = see(
            lws_workload(leaderworkerset(ready=0)), [lws_pod(LWS, 0, 0, EID, statuses=broken)]
        )
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert "'repo/x:1'" in (seen.reason or "")

    def test_a_crash_loop_quotes_the_exit_and_the_last_log_lines(self) -> None:
        crashing = waiting("engine", "CrashLoopBackOff", "back-off 5m0s", restarts=6, exit_code=1)
        leader = lws_pod(LWS, 0, 0, EID, statuses=[crashing])
        key = (leader["metadata"]["uid"], "engine", 6)
        logs = {key: "loading weights\nValueError: tp_size 16 is not divisible by nnodes 3\n"}
        seen = see(lws_workload(leaderworkerset(ready=0)), [leader], logs)
        assert seen.status is EndpointStatus.UPDATE_FAILED
        reason = seen.reason or ""
        assert "container engine of pod llm-chat-0 (group 0, leader) keeps crashing" in reason
        assert "exited with code 1 (Error), restarted 6 times" in reason
        assert reason.endswith(
            "  loading weights\n  ValueError: tp_size 16 is not divisible by nnodes 3"
        )

    def test_an_oom_killed_crash_loop_says_to_raise_memory(self) -> None:
        crashing = waiting(
            "engine", "CrashLoopBackOff", restarts=2, exit_code=137, exit_reason="OOMKilled"
        )
        seen = see(
            lws_workload(leaderworkerset(ready=0)), [lws_pod(LWS, 0, 0, EID, statuses=[crashing])]
        )
        assert "OOMKilled: out of memory; raise `memory`" in (seen.reason or "")

    def test_a_group_recreated_again_and_again_is_a_failure(self) -> None:
        history = {1: Recreations(3, "container engine of pod llm-chat-1-1 exited with code 137")}
        seen = see(lws_workload(leaderworkerset(ready=1)), group(0), recreations=history)
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert "group 1 was recreated 3 times after a pod failed" in (seen.reason or "")
        assert "exited with code 137" in (seen.reason or "")

    def test_a_stalled_deployment_is_a_failure(self) -> None:
        deployment = leaderworkerset(replicas=1, ready=0, updated=1)
        deployment["status"]["conditions"] = [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "llm-chat-5d8" has timed out progressing.'}
        ]  # fmt: skip
        seen = see(Workload("Deployment", LWS, deployment, 3, 1), [])
        assert seen.status is EndpointStatus.UPDATE_FAILED
        assert "timed out progressing" in (seen.reason or "")


def test_crashing_containers_are_keyed_by_pod_uid_container_and_restart_count() -> None:
    leader = lws_pod(LWS, 0, 0, EID, statuses=[waiting("engine", "CrashLoopBackOff", restarts=4)])
    found = crashing_containers([leader, *group(1)])
    assert [(c.pod, c.container, c.key) for c in found] == [
        ("llm-chat-0", "engine", (leader["metadata"]["uid"], "engine", 4))
    ]


def test_a_deployment_with_enough_ready_pods_ignores_a_surplus_pod_that_is_starting() -> None:
    labels = {"llm-launch.io/endpoint-id": EID}
    starting = pod("llm-chat-new", labels, ready=False)
    starting["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"  # the oldest: group 0
    serving = pod("llm-chat-old", labels, ready=True)
    serving["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    deployment = leaderworkerset(replicas=1, ready=1, updated=1)
    seen = see(Workload("Deployment", LWS, deployment, 3, 1), [starting, serving])
    assert seen.status is EndpointStatus.READY


def test_a_deployment_short_of_ready_pods_names_the_one_it_waits_for() -> None:
    labels = {"llm-launch.io/endpoint-id": EID}
    deployment = leaderworkerset(replicas=1, ready=0, updated=1)
    seen = see(Workload("Deployment", LWS, deployment, 3, 1), [pod("llm-chat-x", labels)])
    assert "group 0: waiting for the leader llm-chat-x" in (seen.reason or "")
