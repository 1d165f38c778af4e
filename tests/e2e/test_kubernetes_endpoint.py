"""`llm-launch serve --backend kubernetes` end to end, against a local server speaking the
Kubernetes REST API: the runbook body becomes a LeaderWorkerSet, its pods' state drives the
endpoint's status, unsupported specs are refused, and delete removes every object."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import seed_body
from tests.fakes.kube_api import FakeKubeApi, lws_pod, unschedulable
from tests.support.deletes import wait_until_deleted
from tests.support.kubernetes_server import serving_on_kubernetes
from tests.support.local_groups import wait_for
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")  # alice's


@pytest.fixture
def client(kube_api: FakeKubeApi, tmp_path: Path) -> Iterator[httpx.Client]:
    with serving_on_kubernetes(kube_api, tmp_path) as http:
        yield http


def put_group(kube_api: FakeKubeApi, endpoint_id: str, **pod_args: object) -> None:
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    for rank in (0, 1):
        owner = lws["metadata"]["uid"]
        kube_api.put("pods", lws_pod(LWS, 0, rank, endpoint_id, owner_uid=owner, **pod_args))


def controller_reports(kube_api: FakeKubeApi, ready: int) -> None:
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    status = {"observedGeneration": lws["metadata"]["generation"], "replicas": 1}
    kube_api.set_status(
        "leaderworkersets", LWS, status | {"readyReplicas": ready, "updatedReplicas": 1}
    )


def test_the_runbook_endpoint_runs_as_a_leaderworkerset_whose_pods_drive_its_status(
    kube_api: FakeKubeApi, client: httpx.Client
) -> None:
    assert client.post("/v1/llm/model-endpoints", json=seed_body()).status_code == 200
    endpoint = wait_for(
        client, "deepseek-r1", lambda e: f"{LWS}-leader" in kube_api.names("services")
    )
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2

    controller_reports(kube_api, ready=0)
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    put_group(kube_api, str(endpoint["id"]), phase="Pending", statuses=[],
              scheduled=unschedulable(message), requests={"nvidia.com/gpu": "8"})  # fmt: skip
    # Waiting for GPUs is not a failure (a cluster autoscaler may be adding nodes) until
    # the unschedulable timeout (15 min) has passed.
    waiting = wait_for(
        client, "deepseek-r1",
        lambda e: "waiting for 8 nvidia.com/gpu" in (e["spec"]["status_reason"] or ""), timeout=30,
    )  # fmt: skip
    assert waiting["status"] == "UPDATE_IN_PROGRESS"
    assert "Insufficient nvidia.com/gpu" in waiting["spec"]["status_reason"]

    put_group(kube_api, str(endpoint["id"]), ready=True)
    controller_reports(kube_api, ready=1)
    ready = wait_for(client, "deepseek-r1", lambda e: e["status"] == "READY", timeout=30)
    assert ready["spec"]["deployment_state"]["available_workers"] == 1
    (group,) = ready["spec"]["groups"]  # the group's pods, from the watch cache
    assert (group["index"], group["ready"], group["phase"]) == (0, True, "ready")
    assert [(p["name"], p["pid"], p["alive"]) for p in group["processes"]] == [
        ("rank-0", None, True), ("rank-1", None, True),
    ]  # fmt: skip

    assert client.delete("/v1/llm/model-endpoints/deepseek-r1").json() == {"deleted": True}
    assert client.get("/v1/llm/model-endpoints/deepseek-r1").status_code == 404  # at once
    wait_until_deleted(client, "deepseek-r1")  # the foreground deletion ends in the background
    assert kube_api.get("leaderworkersets", LWS) is None
    assert f"{LWS}-leader" not in kube_api.names("services")


def test_scale_to_zero_is_refused_by_the_kubernetes_backend_and_nothing_is_created(
    kube_api: FakeKubeApi, client: httpx.Client
) -> None:
    response = client.post("/v1/llm/model-endpoints", json=seed_body(min_workers=0, max_workers=2))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "min_workers"
    assert client.get("/v1/llm/model-endpoints").json()["model_endpoints"] == []
    assert kube_api.names("leaderworkersets") == []
