"""`llm-launch serve --backend kubernetes` through a multi-node endpoint's whole life, against
the test API server with a simulated cluster in it (`tests/fakes/kube_cluster`): the seed
endpoint waits for a GPU node, its LeaderWorkerSet's pods come up, it goes READY, a worker
is OOMKilled, LWS recreates the group, and the endpoint's status says so at each step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.kube_cluster import FakeCluster, Node, Taint
from tests.support.kubernetes_server import serving_on_kubernetes
from tests.support.local_groups import wait_for
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")  # alice's
LEADER, WORKER = f"{LWS}-0", f"{LWS}-0-1"


def h100(name: str) -> Node:
    """A node as the seed's pods need one: 8 H100s, labelled and tainted for GPUs."""
    labels = {"k8s.amazonaws.com/accelerator": "nvidia-hopper-h100"}
    return Node(name, gpus=8, labels=labels, taints=[Taint("nvidia.com/gpu", "present")])


@pytest.fixture
def cluster(kube_api: FakeKubeApi) -> Iterator[FakeCluster]:
    running = FakeCluster(kube_api, nodes=[h100("gpu-0")])
    running.behave("*", ready=False)  # the readiness checks fail until the test lets them pass
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(kube_api: FakeKubeApi, tmp_path: Path) -> Iterator[httpx.Client]:
    with serving_on_kubernetes(kube_api, tmp_path) as http:
        yield http


def reason(endpoint: dict[str, Any]) -> str:
    return str(endpoint["spec"].get("status_reason") or "")


def uid(kube_api: FakeKubeApi, pod: str) -> str | None:
    found = kube_api.get("pods", pod)
    return None if found is None else str(found["metadata"]["uid"])


def test_the_seed_endpoint_waits_for_gpus_goes_ready_and_survives_a_worker_oomkill(
    kube_api: FakeKubeApi, cluster: FakeCluster, client: httpx.Client
) -> None:
    assert client.post("/v1/llm/model-endpoints", json=seed_body()).status_code == 200

    # One node: the leader takes it, the worker finds no node with 8 free GPUs. A scale-up
    # may come, so the endpoint waits (in progress) and says for what, and until when.
    waiting = wait_for(client, "deepseek-r1", lambda e: "nvidia.com/gpu" in reason(e), 30)
    assert waiting["status"] == "UPDATE_IN_PROGRESS"
    assert "is waiting for 8 nvidia.com/gpu" in reason(waiting)
    assert "fails after 15 min" in reason(waiting)
    assert WORKER in reason(waiting) and "Insufficient nvidia.com/gpu" in reason(waiting)
    [event] = [e for e in cluster.events(WORKER) if e["reason"] == "FailedScheduling"]
    assert event["message"].startswith("0/1 nodes are available: 1 Insufficient cpu, ")

    # A second GPU node joins (as after a cluster-autoscaler scale-up): both pods run, and
    # the endpoint waits for the leader's readiness check, a real generation.
    cluster.add_node(h100("gpu-1"))
    loading = wait_for(client, "deepseek-r1", lambda e: "readiness" in reason(e), 30)
    assert loading["status"] == "UPDATE_IN_PROGRESS"
    assert reason(loading).startswith(
        f"group 0: waiting for the leader {LEADER} to pass its readiness check (a real generation)"
    )

    cluster.behave("*")  # the engine answers: leader and worker turn Ready
    ready = wait_for(client, "deepseek-r1", lambda e: e["status"] == "READY", 30)
    assert reason(ready).startswith("ready")
    assert ready["spec"]["deployment_state"]["available_workers"] == 1

    # The worker's engine is OOMKilled. The kubelet restarts it, LWS (RecreateGroupOnPod-
    # Restart) deletes the group's leader, the garbage collector the worker, and the group
    # comes back as new pods, which stay unready until the test lets them pass.
    before = uid(kube_api, LEADER), uid(kube_api, WORKER)
    cluster.behave("*", ready=False)
    cluster.fail(WORKER, exit_code=137, reason="OOMKilled")
    recreating = wait_for(
        client,
        "deepseek-r1",
        lambda e: e["status"] != "READY" and uid(kube_api, LEADER) not in (None, before[0]),
        30,
    )
    # What the new group waits for, that it was recreated, and why (the exit was captured
    # from the pod watch before LWS deleted the group).
    assert recreating["status"] == "UPDATE_IN_PROGRESS"
    assert reason(recreating).startswith("group 0: ")
    assert "recreated 1 time since it was last ready" in reason(recreating)
    assert f"container engine of pod {WORKER} exited with code 137 (OOMKilled" in reason(recreating)
    assert recreating["spec"]["deployment_state"]["available_workers"] == 0

    cluster.behave("*")
    again = wait_for(client, "deepseek-r1", lambda e: e["status"] == "READY", 30)
    assert (uid(kube_api, LEADER), uid(kube_api, WORKER)) != before
    assert reason(again).startswith("ready; group 0 was recreated 1 time after a pod failed")
    assert f"container engine of pod {WORKER} exited with code 137 (OOMKilled" in reason(again)
    assert again["spec"]["deployment_state"]["available_workers"] == 1

    assert client.delete("/v1/llm/model-endpoints/deepseek-r1").json() == {"deleted": True}
    wait_for_gone(kube_api)


def wait_for_gone(kube_api: FakeKubeApi, timeout: float = 30.0) -> None:
    """The LeaderWorkerSet, its Service and (through the garbage collector) its pods go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not kube_api.names("leaderworkersets") and not kube_api.names("pods"):
            assert f"{LWS}-leader" not in kube_api.names("services")
            return
        time.sleep(0.1)
    raise AssertionError(
        f"left behind: {kube_api.names('leaderworkersets')} {kube_api.names('pods')}"
    )
