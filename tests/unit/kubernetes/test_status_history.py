"""Group recreations from pod events: `backends/kubernetes/history.py`, no HTTP."""

from __future__ import annotations

from typing import Any

from llm_launch.backends.kubernetes.history import (
    RecreationTracker,
    Termination,
    termination_cause,
)
from llm_launch.backends.kubernetes.status import Workload, observe
from llm_launch.domain.status import EndpointStatus
from tests.fakes.kube_api import lws_pod, running

EID = "ep-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recreate(tracker: RecreationTracker, group: int, revision: str = "rev-1") -> None:
    """One group recreation as the pod watch sees it: the group's pods go, new ones come."""
    for rank in (0, 1):
        tracker.record("DELETED", lws_pod("llm-chat", group, rank, EID, revision=revision))
    for rank in (0, 1):
        tracker.record("ADDED", lws_pod("llm-chat", group, rank, EID, revision=revision))


def crashed_worker(group: int, **last: Any) -> dict[str, Any]:
    return lws_pod("llm-chat", group, 1, EID, statuses=[running(restarts=1, **last)])


def test_a_leader_back_under_its_name_with_a_new_uid_counts_as_a_recreation() -> None:
    tracker = RecreationTracker()
    tracker.record("ADDED", lws_pod("llm-chat", 1, 0, EID))
    recreate(tracker, 1)
    recreate(tracker, 1)
    assert tracker.recreations(EID)[1].count == 2
    assert 0 not in tracker.recreations(EID)


def test_a_rollout_to_a_new_revision_is_not_a_recreation() -> None:
    tracker = RecreationTracker()
    tracker.record("ADDED", lws_pod("llm-chat", 0, 0, EID, revision="rev-1"))
    recreate(tracker, 0, revision="rev-2")
    assert tracker.recreations(EID) == {}


def test_the_cause_is_the_last_failure_before_deletion_not_the_kill_itself() -> None:
    tracker = RecreationTracker()
    tracker.record("ADDED", lws_pod("llm-chat", 1, 0, EID))
    tracker.record("MODIFIED", crashed_worker(1, exit_code=137, exit_reason="OOMKilled"))
    killed = crashed_worker(1, exit_code=143)
    killed["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    tracker.record("MODIFIED", killed)
    recreate(tracker, 1)
    cause = tracker.recreations(EID)[1].last_cause
    assert cause == (
        "container engine of pod llm-chat-1-1 exited with code 137 "
        "(OOMKilled: out of memory; raise `memory`)"
    )


def test_recreations_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    tracker = RecreationTracker(window_s=60, clock=clock)
    tracker.record("ADDED", lws_pod("llm-chat", 0, 0, EID))
    recreate(tracker, 0)
    clock.now += 61
    recreate(tracker, 0)
    assert tracker.recreations(EID)[0].count == 1


def test_forget_drops_an_endpoint() -> None:
    tracker = RecreationTracker()
    tracker.record("ADDED", lws_pod("llm-chat", 0, 0, EID))
    recreate(tracker, 0)
    tracker.forget(EID)
    assert tracker.recreations(EID) == {}


def test_a_clean_exit_is_not_a_cause() -> None:
    assert termination_cause(crashed_worker(0, exit_code=0, exit_reason="Completed")) is None


def startup_killed(tracker: RecreationTracker, leader: dict[str, Any]) -> None:
    """The kubelet's words when the startup probe gives up on the leader's engine."""
    tracker.record_event(
        "ADDED",
        {
            "involvedObject": {"kind": "Pod", "uid": leader["metadata"]["uid"]},
            "reason": "Killing",
            "message": "Container engine failed startup probe, will be restarted",
        },
    )


def test_a_group_recreated_every_half_hour_without_becoming_ready_fails_and_says_why() -> None:
    clock = Clock()
    tracker = RecreationTracker(window_s=600, clock=clock)
    leader = lws_pod("llm-chat", 0, 0, EID)
    leader["spec"]["containers"][0]["startupProbe"] = {"periodSeconds": 10, "failureThreshold": 180}
    tracker.record("ADDED", leader)
    for _ in range(3):
        clock.now += 1800  # each recreation far outside the window of the other rule
        startup_killed(tracker, leader)
        tracker.record("DELETED", leader)
        leader = {**leader, "metadata": {**leader["metadata"], "uid": f"uid-{clock.now}"}}
        tracker.record("ADDED", leader)
    recreated = tracker.recreations(EID)[0]
    assert (recreated.count, recreated.since_ready) == (1, 3)
    workload = Workload("LeaderWorkerSet", "llm-chat", _lws(), 3, 1)
    seen = observe(workload, [], {}, tracker.recreations(EID))
    assert seen.status is EndpointStatus.UPDATE_FAILED
    reason = seen.reason or ""
    assert "group 0 was recreated 3 times without ever becoming ready" in reason
    assert "startup probe budget 30 min exceeded" in reason
    assert "failed startup probe, will be restarted" in reason


def test_becoming_ready_resets_the_count_since_ready() -> None:
    tracker = RecreationTracker()
    tracker.record("ADDED", lws_pod("llm-chat", 0, 0, EID))
    recreate(tracker, 0)
    recreate(tracker, 0)
    tracker.record("MODIFIED", lws_pod("llm-chat", 0, 0, EID, ready=True))
    assert tracker.recreations(EID)[0].since_ready == 0


def test_a_failed_container_is_reported_once_as_soon_as_the_watch_sees_it() -> None:
    seen: list[Termination] = []
    tracker = RecreationTracker(on_termination=seen.append)
    worker = crashed_worker(0, exit_code=137, exit_reason="OOMKilled")
    worker["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"] = "tail\n"
    tracker.record("MODIFIED", worker)
    tracker.record("MODIFIED", worker)
    assert [(t.pod, t.container, t.previous) for t in seen] == [("llm-chat-0-1", "engine", True)]
    assert tracker.log_of(seen[0].key) == "tail"  # FallbackToLogsOnError's message


def _lws() -> dict[str, Any]:
    return {
        "metadata": {"name": "llm-chat", "generation": 1,
                     "annotations": {"llm-launch.io/generation": "3"}},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2}},
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0,
                   "updatedReplicas": 1},
    }  # fmt: skip
