"""Group recreations from pod events: `backends/kubernetes/history.py`, no HTTP."""

from __future__ import annotations

from typing import Any

from llm_launch.backends.kubernetes.history import RecreationTracker, termination_cause
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
