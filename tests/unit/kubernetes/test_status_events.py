"""Status while pods wait for capacity, and the Events it quotes: `status.py` with
`events.py`, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llm_launch.backends.kubernetes.events import EventIndex, related_uids, view
from llm_launch.backends.kubernetes.status import Evidence, Workload, observe
from llm_launch.domain.status import EndpointStatus
from tests.fakes.kube_api import lws_pod, unschedulable
from tests.unit.kubernetes.test_status import EID, GPU_MESSAGE, LWS, group, leaderworkerset

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pending_leader(minutes_ago: float) -> dict[str, Any]:
    condition = unschedulable(GPU_MESSAGE)
    since = NOW - timedelta(minutes=minutes_ago)
    condition["lastTransitionTime"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return lws_pod(
        LWS, 0, 0, EID, phase="Pending", statuses=[], scheduled=condition,
        requests={"nvidia.com/gpu": "8"},
    )  # fmt: skip


def event(about: dict[str, Any], reason: str, message: str, **extra: Any) -> dict[str, Any]:
    metadata = about["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{metadata['name']}.{reason.lower()}", "namespace": "default"},
        "involvedObject": {"kind": about.get("kind", "Pod"), "name": metadata["name"],
                           "uid": metadata["uid"]},
        "reason": reason,
        "message": message,
        "type": extra.pop("type", "Warning"),
        "lastTimestamp": extra.pop("last", "2026-03-01T11:59:00Z"),
        **extra,
    }  # fmt: skip


def see(pods: list[dict[str, Any]], events: list[dict[str, Any]], timeout_s: float = 900) -> Any:
    workload = Workload("LeaderWorkerSet", LWS, leaderworkerset(replicas=1, ready=0), 3, 1)
    index = EventIndex()
    for item in events:
        index.apply("ADDED", item)
    evidence = Evidence(index.about(related_uids(workload.obj, pods)), NOW, timeout_s)
    return observe(workload, pods, {}, {}, evidence)


def test_a_pod_waiting_for_gpus_is_in_progress_not_failed_within_the_timeout() -> None:
    seen = see([pending_leader(minutes_ago=5), group(0)[1]], [])
    assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
    reason = seen.reason or ""
    assert f"group 0: pod {LWS}-0 (leader) is waiting for 8 nvidia.com/gpu" in reason
    assert "3 Insufficient nvidia.com/gpu" in reason
    assert "fails after 15 min" in reason


def test_a_pod_waiting_for_gpus_fails_once_the_timeout_has_passed() -> None:
    seen = see([pending_leader(minutes_ago=16)], [])
    assert seen.status is EndpointStatus.UPDATE_FAILED
    assert "needs 8 nvidia.com/gpu and no node has had that many free for 16 min" in (
        seen.reason or ""
    )


def test_a_triggered_scale_up_is_said() -> None:
    leader = pending_leader(minutes_ago=2)
    scale_up = event(
        leader, "TriggeredScaleUp", "pod triggered scale-up: [{gpu-h100 1->3 (max: 8)}]",
        type="Normal",
    )  # fmt: skip
    seen = see([leader], [scale_up])
    assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert "a scale-up was triggered (TriggeredScaleUp on pod" in (seen.reason or "")
    assert "gpu-h100 1->3" in (seen.reason or "")


def test_karpenter_nominating_a_node_counts_as_a_scale_up() -> None:
    leader = pending_leader(minutes_ago=2)
    nominated = event(leader, "Nominated", "Pod should schedule on: nodeclaim/gpu-x7k2p")
    assert "a scale-up was triggered (Nominated" in (see([leader], [nominated]).reason or "")


def test_an_autoscaler_that_declines_is_said() -> None:
    leader = pending_leader(minutes_ago=2)
    declined = event(
        leader, "NotTriggerScaleUp",
        "pod didn't trigger scale-up: 1 max node group size reached",
    )  # fmt: skip
    reason = see([leader], [declined]).reason or ""
    assert "the cluster autoscaler did not scale up" in reason
    assert "max node group size reached" in reason


def test_a_failing_probe_of_a_group_that_is_not_ready_is_quoted() -> None:
    pods = group(0, ready=False)
    unhealthy = event(
        pods[0], "Unhealthy", 'Startup probe failed: Get "http://10.0.0.5:5005/health": '
        "connect: connection refused", count=12,
    )  # fmt: skip
    seen = see(pods, [unhealthy])
    assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
    reason = seen.reason or ""
    assert "group 0: waiting for the leader" in reason
    assert f"last event: Unhealthy on pod {LWS}-0: Startup probe failed" in reason
    assert "12 times" in reason


def test_events_of_other_objects_are_never_quoted() -> None:
    pods = group(0, ready=False)
    stranger = lws_pod("llm-other-abcdef", 0, 0, "ep-other")
    foreign = event(stranger, "FailedMount", "MountVolume.SetUp failed for volume secret-x")
    reason = see(pods, [foreign]).reason or ""
    assert "last event" not in reason and "llm-other" not in reason


def test_an_event_index_forgets_deleted_events() -> None:
    pod = group(0)[0]
    index = EventIndex()
    item = event(pod, "BackOff", "Back-off restarting failed container")
    index.apply("ADDED", item)
    assert [e.reason for e in index.about([pod["metadata"]["uid"]])] == ["BackOff"]
    index.apply("DELETED", item)
    assert index.about([pod["metadata"]["uid"]]) == []
    assert view(item).quote().startswith(f"BackOff on pod {LWS}-0: Back-off restarting")
