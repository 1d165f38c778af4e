"""The simulated cluster (`tests/fakes/kube_cluster`) does to our objects what LWS, the
Deployment controller, kube-scheduler and the kubelet do, and the backend, reading it
through the real client and watch, sees real group lifecycles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import TOKEN, FakeKubeApi
from tests.fakes.kube_cluster import FakeCluster, Node, Taint
from tests.integration.kubernetes.conftest import an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
CHAT = k8s_name("chat")
H100 = {"k8s.amazonaws.com/accelerator": "nvidia-hopper-h100"}
A10 = {"k8s.amazonaws.com/accelerator": "nvidia-ampere-a10"}
GPU_TAINT = Taint("nvidia.com/gpu", "present")
T = TypeVar("T")


def h100(name: str, gpus: int = 8) -> Node:
    return Node(name, gpus=gpus, labels=dict(H100), taints=[GPU_TAINT])


@pytest.fixture
async def cluster(kube_api: FakeKubeApi) -> AsyncIterator[FakeCluster]:
    running = FakeCluster(kube_api, nodes=[h100("gpu-0"), h100("gpu-1")]).start()
    try:
        yield running
    finally:
        running.stop()


async def until(probe: Callable[[], T], check: Callable[[T], bool], timeout_s: float = 10.0) -> T:
    async def probe_async() -> T:
        return probe()

    return await eventually(probe_async, check, timeout_s)


def pods(kube_api: FakeKubeApi) -> dict[str, dict[str, Any]]:
    found = {name: kube_api.get("pods", name) for name in kube_api.names("pods")}
    return {name: pod for name, pod in found.items() if pod is not None}


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def all_ready(names: list[str]) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda found: all(n in found and ready(found[n]) for n in names)


def multinode(**overrides: Any) -> Endpoint:
    return an_endpoint(seed_body(**overrides), endpoint_id="ep-multi")


class TestLeaderWorkerSet:
    async def test_each_group_is_a_leader_and_workers_with_the_labels_annotations_and_env_lws_gives(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi, cluster: FakeCluster
    ) -> None:
        cluster.add_node(h100("gpu-2"))
        cluster.add_node(h100("gpu-3"))
        await backend.apply(multinode(min_workers=2, max_workers=2))
        names = [f"{LWS}-0", f"{LWS}-0-1", f"{LWS}-1", f"{LWS}-1-1"]
        found = await until(lambda: pods(kube_api), all_ready(names))
        assert sorted(found) == names
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None
        leader, worker = found[f"{LWS}-1"], found[f"{LWS}-1-1"]
        prefix = "leaderworkerset.sigs.k8s.io/"
        keys = ("name", "group-index", "worker-index")
        assert [leader["metadata"]["labels"][prefix + k] for k in keys] == [LWS, "1", "0"]
        assert worker["metadata"]["labels"][prefix + "worker-index"] == "1"
        for key in ("group-key", "template-revision-hash", "group-index"):
            assert (
                worker["metadata"]["labels"][prefix + key]
                == leader["metadata"]["labels"][prefix + key]
            )
        assert worker["metadata"]["annotations"][prefix + "size"] == "2"
        assert worker["metadata"]["annotations"][prefix + "leader-name"] == f"{LWS}-1"
        assert leader["metadata"]["labels"]["llm-launch.io/role"] == "leader"  # leaderTemplate
        env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
        assert env["LWS_LEADER_ADDRESS"] == f"{LWS}-1.{LWS}.default"
        assert (env["LWS_GROUP_SIZE"], env["LWS_WORKER_INDEX"]) == ("2", "1")
        assert [e["name"] for e in worker["spec"]["containers"][0]["env"][:3]] == [
            "LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"]  # fmt: skip
        assert leader["metadata"]["ownerReferences"][0]["uid"] == lws["metadata"]["uid"]
        assert worker["metadata"]["ownerReferences"][0]["uid"] == leader["metadata"]["uid"]
        headless = kube_api.get("services", LWS)
        assert headless is not None and headless["spec"]["clusterIP"] == "None"

    async def test_its_status_counts_ready_and_updated_groups_with_the_conditions_lws_writes(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi, cluster: FakeCluster
    ) -> None:
        await backend.apply(multinode())
        lws = await until(
            lambda: kube_api.get("leaderworkersets", LWS),
            lambda o: o is not None and (o.get("status") or {}).get("readyReplicas") == 1,
        )
        assert lws is not None
        status = lws["status"]
        assert (status["replicas"], status["updatedReplicas"]) == (1, 1)
        assert status["observedGeneration"] == lws["metadata"]["generation"]
        assert status["hpaPodSelector"] == (
            f"leaderworkerset.sigs.k8s.io/name={LWS},leaderworkerset.sigs.k8s.io/worker-index=0"
        )
        conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
        assert conditions["Available"] == ("True", "AllGroupsReady")
        assert conditions["Progressing"] == ("False", "GroupsProgressing")
        available = "All replicas are ready, with 1 groups ready of total 1 groups"
        await until(lambda: [e["message"] for e in cluster.events(LWS)], lambda m: available in m)

    async def test_an_oomkilled_worker_makes_lws_recreate_the_whole_group(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi, cluster: FakeCluster
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        names = [f"{LWS}-0", f"{LWS}-0-1"]
        before = await until(lambda: pods(kube_api), all_ready(names))
        await eventually(
            lambda: backend.observe(endpoint), lambda o: o.status is EndpointStatus.READY
        )
        cluster.fail(f"{LWS}-0-1", exit_code=137, reason="OOMKilled")
        after = await until(
            lambda: pods(kube_api),
            lambda found: (
                all_ready(names)(found)
                and all(found[n]["metadata"]["uid"] != before[n]["metadata"]["uid"] for n in names)
            ),
        )
        assert all(
            c["restartCount"] == 0 for n in names for c in after[n]["status"]["containerStatuses"]
        )
        seen = await eventually(
            lambda: backend.observe(endpoint), lambda o: "recreated" in (o.reason or "")
        )
        assert seen.status is EndpointStatus.READY
        assert f"container engine of pod {LWS}-0-1 exited with code 137 (OOMKilled" in str(
            seen.reason
        )

    async def test_a_new_template_rolls_each_group_onto_the_new_revision_and_is_no_failure(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi, cluster: FakeCluster
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        await eventually(
            lambda: backend.observe(endpoint), lambda o: o.status is EndpointStatus.READY
        )
        revision = "leaderworkerset.sigs.k8s.io/template-revision-hash"
        before = pods(kube_api)[f"{LWS}-0"]["metadata"]["labels"][revision]
        upgraded = an_endpoint(
            seed_body(cpus=150),
            endpoint_id="ep-multi",
            generation=2,
        )
        await backend.apply(upgraded)
        found = await until(
            lambda: pods(kube_api),
            lambda found: (
                all_ready([f"{LWS}-0", f"{LWS}-0-1"])(found)
                and {p["metadata"]["labels"][revision] for p in found.values()} - {before} != set()
                and len({p["metadata"]["labels"][revision] for p in found.values()}) == 1
            ),
        )
        assert found[f"{LWS}-0-1"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "150"
        seen = await eventually(
            lambda: backend.observe(upgraded), lambda o: o.status is EndpointStatus.READY
        )
        assert seen.reason == "ready"  # a rollout is not a recreation after a failure

    async def test_scaling_down_removes_the_groups_with_the_highest_indexes(
        self, kube_api: FakeKubeApi, cluster: FakeCluster, backend: KubernetesBackend
    ) -> None:
        cluster.add_node(h100("gpu-2"))
        cluster.add_node(h100("gpu-3"))
        await backend.apply(multinode(min_workers=2, max_workers=2))
        await until(lambda: pods(kube_api), all_ready([f"{LWS}-0", f"{LWS}-1-1"]))
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None
        lws["spec"]["replicas"] = 1
        kube_api.put("leaderworkersets", lws)
        found = await until(lambda: pods(kube_api), lambda found: len(found) == 2)
        assert sorted(found) == [f"{LWS}-0", f"{LWS}-0-1"]


class TestScheduler:
    async def test_a_pod_no_node_fits_stays_pending_with_the_schedulers_message_and_event(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        nodes = [h100("gpu-0"), h100("small", gpus=4), Node("cpu-0", gpus=0)]
        cluster = FakeCluster(kube_api, nodes=nodes).start()
        try:
            await backend.apply(multinode())
            worker = await until(
                lambda: kube_api.get("pods", f"{LWS}-0-1"),
                lambda p: p is not None and (p.get("status") or {}).get("conditions") is not None,
            )
        finally:
            cluster.stop()
        assert worker is not None
        # gpu-0 holds the leader (cpu and GPUs taken), `small` has 4 GPUs, cpu-0 no label;
        # only on gpu-0 could preemption free room (kubernetes FitError.Error()).
        message = (
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node "
            "affinity/selector, 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
            "available: 1 No preemption victims found for incoming pod, "
            "2 Preemption is not helpful for scheduling."
        )
        condition = next(c for c in worker["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (condition["status"], condition["reason"], condition["message"]) == (
            "False", "Unschedulable", message)  # fmt: skip
        assert worker["status"]["phase"] == "Pending" and "nodeName" not in worker["spec"]
        [event] = [e for e in cluster.events(f"{LWS}-0-1") if e["reason"] == "FailedScheduling"]
        assert (event["type"], event["message"]) == ("Warning", message)

    async def test_a_node_that_joins_later_takes_the_pending_pod(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        cluster = FakeCluster(kube_api, nodes=[h100("gpu-0")]).start()
        try:
            await backend.apply(multinode())
            await until(
                lambda: kube_api.get("pods", f"{LWS}-0-1"),
                lambda p: (
                    p is not None
                    and "Insufficient" in str((p.get("status") or {}).get("conditions"))
                ),
            )
            cluster.add_node(h100("gpu-1"))
            found = await until(lambda: pods(kube_api), all_ready([f"{LWS}-0", f"{LWS}-0-1"]))
        finally:
            cluster.stop()
        assert {p["spec"]["nodeName"] for p in found.values()} == {"gpu-0", "gpu-1"}

    async def test_an_untolerated_taint_and_a_missing_label_are_not_helped_by_preemption(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        nodes = [
            Node("tainted", labels=dict(H100), taints=[Taint("dedicated", "infra")]),
            Node("plain"),
        ]
        cluster = FakeCluster(kube_api, nodes=nodes).start()
        try:
            await backend.apply(multinode())
            leader = await until(
                lambda: kube_api.get("pods", f"{LWS}-0"),
                lambda p: p is not None and bool((p.get("status") or {}).get("conditions")),
            )
        finally:
            cluster.stop()
        assert leader is not None
        assert leader["status"]["conditions"][0]["message"] == (
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            "1 node(s) had untolerated taint {dedicated: infra}. preemption: 0/2 nodes are "
            "available: 2 Preemption is not helpful for scheduling."
        )


class TestKubelet:
    async def test_an_image_that_cannot_be_pulled_shows_err_image_pull_then_back_off(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi, cluster: FakeCluster
    ) -> None:
        cluster.image_pull_error("role:worker")
        await backend.apply(multinode())
        worker = await until(
            lambda: kube_api.get("pods", f"{LWS}-0-1"),
            lambda p: (
                p is not None
                and "ImagePullBackOff" in str((p.get("status") or {}).get("containerStatuses"))
            ),
        )
        assert worker is not None
        state = worker["status"]["containerStatuses"][0]["state"]["waiting"]
        image = worker["spec"]["containers"][0]["image"]
        assert state == {
            "reason": "ImagePullBackOff",
            "message": f'Back-off pulling image "{image}"',
        }
        reasons = {e["reason"] for e in cluster.events(f"{LWS}-0-1")}
        assert {"Failed", "BackOff"} <= reasons

    async def test_a_crashing_deployment_pod_is_in_crash_loop_back_off_with_its_previous_log(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        cluster = FakeCluster(
            kube_api, nodes=[Node("a10-0", gpus=4, labels=dict(A10), taints=[GPU_TAINT])]
        )
        cluster.behave("*", crash_after=2, exit_code=1, reason="Error")
        cluster.start()
        try:
            await backend.apply(
                an_endpoint(
                    endpoint_body(name="chat", min_workers=1, max_workers=1), endpoint_id="ep-chat"
                )
            )
            running = await until(
                lambda: list(pods(kube_api).values()), lambda found: len(found) == 1
            )
            name = running[0]["metadata"]["name"]
            cluster.set_log(name, "engine", "loading weights\nCUDA error: out of memory\n")
            crashing = await until(
                lambda: kube_api.get("pods", name),
                lambda p: (
                    p is not None
                    and "CrashLoopBackOff" in str(p["status"].get("containerStatuses"))
                ),
            )
        finally:
            cluster.stop()
        assert crashing is not None
        assert (
            name.startswith(f"{CHAT}-")
            and crashing["metadata"]["labels"]["pod-template-hash"] in name
        )
        engine = next(c for c in crashing["status"]["containerStatuses"] if c["name"] == "engine")
        assert engine["restartCount"] >= 2
        assert engine["lastState"]["terminated"]["exitCode"] == 1
        assert crashing["status"]["phase"] == "Running"
        deployment = kube_api.get("deployments", CHAT)
        assert deployment is not None and deployment["status"]["readyReplicas"] == 0
        assert "BackOff" in {e["reason"] for e in cluster.events(name)}
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            previous = await http.get(
                f"{kube_api.url}/api/v1/namespaces/default/pods/{name}/log",
                params={"container": "engine", "previous": "true"},
            )
        assert previous.text == "loading weights\nCUDA error: out of memory\n"


class TestDeployment:
    async def test_a_deployment_runs_its_replicas_and_reports_minimum_availability(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        nodes = [Node(f"a10-{i}", gpus=1, labels=dict(A10), taints=[GPU_TAINT]) for i in range(2)]
        cluster = FakeCluster(kube_api, nodes=nodes).start()
        try:
            endpoint = an_endpoint(
                endpoint_body(name="chat", min_workers=2, max_workers=2), endpoint_id="ep-chat"
            )
            await backend.apply(endpoint)
            deployment = await until(
                lambda: kube_api.get("deployments", CHAT),
                lambda d: d is not None and (d.get("status") or {}).get("availableReplicas") == 2,
            )
            seen = await eventually(
                lambda: backend.observe(endpoint), lambda o: o.status is EndpointStatus.READY
            )
        finally:
            cluster.stop()
        assert deployment is not None and seen.available_workers == 2
        conditions = {c["type"]: c for c in deployment["status"]["conditions"]}
        assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert len({p["spec"]["nodeName"] for p in pods(kube_api).values()}) == 2
