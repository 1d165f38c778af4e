"""Events read through the event watch of the local API server, quoted in status reasons;
pods waiting for GPUs stay in progress until the unschedulable timeout."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.domain.status import EndpointStatus
from tests.builders import seed_body
from tests.fakes.kube_api import FakeKubeApi, lws_pod, running, unschedulable
from tests.integration.kubernetes.conftest import CATALOG, FAST, an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
GPU_MESSAGE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


@pytest.fixture
async def backend(kubeconfig: Path) -> AsyncIterator[KubernetesBackend]:
    config = KubernetesConfig(namespace="default", catalog=CATALOG)
    timing = dataclasses.replace(FAST, unschedulable_timeout_s=3600.0)
    running = KubernetesBackend(config, str(kubeconfig), timing=timing)
    try:
        yield running
    finally:
        await running.close()


def an_event(
    about: dict[str, Any], reason: str, message: str, kind: str = "Normal"
) -> dict[str, Any]:
    metadata = about["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{metadata['name']}.{reason.lower()}", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": metadata["name"], "uid": metadata["uid"]},
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "cluster-autoscaler"},
    }


async def test_pods_waiting_for_gpus_stay_in_progress_and_quote_the_triggered_scale_up(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = an_endpoint(seed_body(), endpoint_id="ep-events")
    await backend.apply(endpoint)
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1}
    kube_api.set_status("leaderworkersets", LWS, status)
    pods = []
    for rank in (0, 1):
        pending = lws_pod(
            LWS, 0, rank, endpoint.id, owner_uid=lws["metadata"]["uid"], phase="Pending",
            statuses=[], scheduled=unschedulable(GPU_MESSAGE), requests={"nvidia.com/gpu": "8"},
        )  # fmt: skip
        pods.append(kube_api.put("pods", pending))
    waiting = await eventually(
        lambda: backend.observe(endpoint),
        lambda s: "waiting for 8 nvidia.com/gpu" in (s.reason or ""),
    )
    assert waiting.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert "(and 1 more pods)" in (waiting.reason or "")
    message = "pod triggered scale-up: [{gpu-h100-pool 2->4 (max: 8)}]"
    kube_api.put("events", an_event(pods[0], "TriggeredScaleUp", message))
    scaling = await eventually(
        lambda: backend.observe(endpoint), lambda s: "scale-up was triggered" in (s.reason or "")
    )
    assert scaling.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert "gpu-h100-pool 2->4" in (scaling.reason or "")


async def test_a_failed_workers_last_log_lines_are_kept_after_its_group_is_deleted(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = an_endpoint(seed_body(), endpoint_id="ep-events")
    await backend.apply(endpoint)
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1}
    kube_api.set_status("leaderworkersets", LWS, status)
    await backend.observe(endpoint)
    for attempt in range(3):  # the worker is OOM-killed; LWS recreates the group each time
        for rank in (0, 1):
            kube_api.put("pods", lws_pod(LWS, 0, rank, endpoint.id))
        kube_api.set_log(f"{LWS}-0-1", "engine", f"loading shard {attempt}\nCUDA OOM\n", True)
        oom = [running(restarts=1, exit_code=137, exit_reason="OOMKilled")]
        kube_api.put("pods", lws_pod(LWS, 0, 1, endpoint.id, statuses=oom))
        await eventually(lambda: _log_reads(kube_api), _count_is(attempt + 1))  # read at once
        for name in (f"{LWS}-0-1", f"{LWS}-0"):
            kube_api.remove("pods", name)
    kube_api.put("pods", lws_pod(LWS, 0, 0, endpoint.id))
    failed = await eventually(
        lambda: backend.observe(endpoint), lambda s: s.status is EndpointStatus.UPDATE_FAILED
    )
    reason = failed.reason or ""
    assert "group 0 was recreated 3 times without ever becoming ready" in reason
    assert f"{LWS}-0-1 exited with code 137 (OOMKilled" in reason
    assert reason.endswith("its last log lines:\n  loading shard 2\n  CUDA OOM")


def _count_is(count: int) -> Callable[[list[object]], bool]:
    return lambda found: len(found) == count


async def _log_reads(kube_api: FakeKubeApi) -> list[object]:
    return [r for r in kube_api.requests if r.query.get("previous") == "true"]
