"""GET's per-group detail on Kubernetes, from pods as the watch cache holds them."""

from __future__ import annotations

from llm_launch.backends.kubernetes.details import group_details
from llm_launch.backends.kubernetes.history import Recreations
from llm_launch.backends.kubernetes.status import Workload
from llm_launch.domain.groups import CauseKind
from tests.fakes.kube_api import lws_pod, running, waiting

EID = "ep-0123456789abcdef"


def an_lws(size: int = 2) -> Workload:
    obj = {"metadata": {"name": "llm-chat"}, "spec": {"replicas": 2,
           "leaderWorkerTemplate": {"size": size}}}  # fmt: skip
    return Workload("LeaderWorkerSet", "llm-chat", obj, 1, 2)


def test_each_group_lists_its_ranks_and_forwarder_with_restarts_and_the_last_exit() -> None:
    leader = [running("engine"), running("forwarder", restarts=2, exit_code=137,
                                         exit_reason="Error")]  # fmt: skip
    pods = [
        lws_pod("llm-chat", 0, 0, EID, statuses=leader, ready=True),
        lws_pod(
            "llm-chat", 0, 1, EID, statuses=[running("engine", restarts=1, exit_code=1)], ready=True
        ),
        lws_pod("llm-chat", 1, 0, EID, statuses=[waiting("engine", "ContainerCreating")]),
    ]
    first, second = group_details(an_lws(), pods, {1: Recreations(count=2, last_cause="x")})

    assert (first.index, first.ready, first.phase) == (0, True, "ready")
    assert [(p.name, p.alive) for p in first.processes] == [
        ("rank-0", True), ("forwarder", True), ("rank-1", True),
    ]  # fmt: skip
    assert (first.restarts, first.forwarder_restarts) == (1, 2)
    assert first.last_cause is not None
    assert first.last_cause.kind in (CauseKind.EXITED, CauseKind.FORWARDER_EXITED)

    assert (second.index, second.ready, second.restarts) == (1, False, 2)
    assert second.phase == "leader: ContainerCreating (container engine)"
    assert second.last_cause is None


def test_a_killed_forwarder_reads_as_its_signal() -> None:
    leader = [running("engine"), running("forwarder", restarts=1, exit_code=137)]
    (group,) = group_details(an_lws(size=1), [lws_pod("llm-chat", 0, 0, EID, statuses=leader)], {})
    cause = group.last_cause
    assert cause is not None
    assert (cause.kind, cause.process, cause.exit_code, cause.signal) == (
        CauseKind.FORWARDER_EXITED, "forwarder", 137, "SIGKILL",
    )  # fmt: skip
