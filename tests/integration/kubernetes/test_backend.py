"""KubernetesBackend end to end against the local API server: the rendered objects, the watch
driving observed status, targets, logs, teardown and garbage collection."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llm_launch.backends.base import Observation
from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import InvalidRequest, NotFound
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import FakeKubeApi, Request, lws_pod, pod, running, unschedulable, waiting
from tests.integration.kubernetes.conftest import an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
CHAT = k8s_name("chat")
GPU_MESSAGE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def multinode(endpoint_id: str = "ep-multi", **overrides: Any) -> Endpoint:
    return an_endpoint(seed_body(**overrides), endpoint_id=endpoint_id)


def controller_reports(kube_api: FakeKubeApi, ready: int, replicas: int = 1) -> None:
    """What the LeaderWorkerSet controller writes once it has seen the object."""
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    generation = lws["metadata"]["generation"]
    status = {"observedGeneration": generation, "replicas": replicas}
    kube_api.set_status(
        "leaderworkersets", LWS, status | {"readyReplicas": ready, "updatedReplicas": replicas}
    )


def put_group(kube_api: FakeKubeApi, endpoint: Endpoint, group: int, **pod_args: Any) -> None:
    """Leader and worker of one group, owned by the LeaderWorkerSet."""
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    for rank in (0, 1):
        kube_api.put(
            "pods",
            lws_pod(LWS, group, rank, endpoint.id, owner_uid=lws["metadata"]["uid"], **pod_args),
        )


async def observed(
    backend: KubernetesBackend, endpoint: Endpoint, status: EndpointStatus
) -> Observation:
    return await eventually(lambda: backend.observe(endpoint), lambda seen: seen.status is status)


class TestApply:
    async def test_apply_creates_the_rendered_objects_and_a_second_apply_writes_nothing(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        assert kube_api.names("leaderworkersets") == [LWS]
        assert kube_api.names("services") == [f"{LWS}-leader"]
        writes = len(kube_api.writes())
        await backend.apply(endpoint)
        await backend.observe(endpoint)
        await backend.apply(endpoint)
        assert len(kube_api.writes()) == writes

    async def test_a_new_generation_is_applied_and_an_hpa_it_dropped_is_deleted(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        autoscaled = multinode(min_workers=1, max_workers=3)
        await backend.apply(autoscaled)
        assert kube_api.names("horizontalpodautoscalers") == [LWS]
        fixed = dataclasses.replace(multinode(), generation=2)
        await backend.apply(fixed)
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None and lws["metadata"]["annotations"]["llm-launch.io/generation"] == "2"
        await eventually(
            lambda: _names(kube_api, "horizontalpodautoscalers"), lambda names: names == []
        )

    async def test_a_422_from_the_server_fails_the_generation_with_its_field_paths(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        cause = {"reason": "FieldValueInvalid", "field": "spec.leaderWorkerTemplate.size",
                 "message": "Invalid value: 0: must be greater than or equal to 1"}  # fmt: skip
        kube_api.fail_next(
            "PATCH", "leaderworkersets", 422, "Invalid", "LeaderWorkerSet is invalid", [cause]
        )
        await backend.apply(multinode())  # recorded, not raised: observe reports it
        failed = await backend.observe(multinode())
        assert failed.status is EndpointStatus.UPDATE_FAILED
        assert "spec.leaderWorkerTemplate.size: apply LeaderWorkerSet" in (failed.reason or "")
        await backend.apply(dataclasses.replace(multinode(), generation=2))  # a new spec: again
        assert kube_api.names("leaderworkersets") == [LWS]

    async def test_a_workload_deleted_behind_our_back_is_applied_again(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        await backend.observe(endpoint)
        kube_api.remove("leaderworkersets", LWS)

        async def reapplied() -> list[str]:
            await backend.apply(endpoint)
            return kube_api.names("leaderworkersets")

        await eventually(reapplied, lambda names: names == [LWS])


class TestObservedStatus:
    async def test_ready_once_every_group_is_ready_and_only_then_routable(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        first = await backend.observe(endpoint)
        assert first.status is EndpointStatus.UPDATE_IN_PROGRESS
        put_group(kube_api, endpoint, 0, ready=False)
        controller_reports(kube_api, ready=0)
        waiting_for = await eventually(
            lambda: backend.observe(endpoint), lambda s: "leader" in (s.reason or "")
        )
        assert f"group 0: waiting for the leader {LWS}-0" in (waiting_for.reason or "")
        assert backend.targets(endpoint) == []
        put_group(kube_api, endpoint, 0, ready=True)
        controller_reports(kube_api, ready=1)
        ready = await observed(backend, endpoint, EndpointStatus.READY)
        assert (ready.available_workers, ready.unavailable_workers) == (1, 0)
        assert backend.targets(endpoint) == [f"http://{LWS}-leader.default.svc"]

    async def test_targets_are_known_only_once_the_watches_have_listed(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        """Before its first list of pods a new leader cannot tell ready groups from none:
        the reconciler must not clear the targets gateways route by on that view."""
        endpoint = multinode()
        kube_api.fail_next("GET", "pods", 500, "InternalError", "etcd is down", times=1000)
        await backend.apply(endpoint)
        waiting = await backend.observe(endpoint)
        assert "waiting for the first list of Pod" in (waiting.reason or "")
        assert not backend.knows_targets(endpoint)

        kube_api.clear_failures()

        async def known() -> bool:
            await backend.observe(endpoint)
            return backend.knows_targets(endpoint)

        assert await eventually(known, lambda yes: yes)

    async def test_a_failing_watch_is_said_in_the_reason_until_it_recovers(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        put_group(kube_api, endpoint, 0, ready=True)
        controller_reports(kube_api, ready=1)
        await observed(backend, endpoint, EndpointStatus.READY)
        kube_api.fail_next("GET", "pods", 500, "InternalError", "etcd is down", times=1000)
        kube_api.end_watches()  # the pod watch must reconnect, and cannot
        stale = await eventually(
            lambda: backend.observe(endpoint), lambda s: "watch failing" in (s.reason or "")
        )
        assert stale.status is EndpointStatus.READY  # what was last seen
        assert "status may be stale" in (stale.reason or "") and "etcd is down" in (
            stale.reason or ""
        )
        kube_api.clear_failures()
        await eventually(
            lambda: backend.observe(endpoint), lambda s: "watch failing" not in (s.reason or "")
        )

    async def test_observe_reads_the_watch_cache_not_the_api_server(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        await backend.observe(endpoint)
        before = len(_not_watching(kube_api))
        for _ in range(20):
            await backend.observe(endpoint)
            await backend.apply(endpoint)
        assert len(_not_watching(kube_api)) == before

    async def test_pending_for_gpus_past_the_timeout_fails_with_the_schedulers_words(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        controller_reports(kube_api, ready=0)
        pending = unschedulable(GPU_MESSAGE)
        pending["lastTransitionTime"] = "2026-01-01T00:00:00Z"  # long past the 15 min
        gpus = {"nvidia.com/gpu": "8"}
        put_group(
            kube_api, endpoint, 0, phase="Pending", statuses=[], scheduled=pending, requests=gpus
        )
        failed = await observed(backend, endpoint, EndpointStatus.UPDATE_FAILED)
        assert "group 0 cannot be scheduled" in (failed.reason or "")
        assert "needs 8 nvidia.com/gpu" in (failed.reason or "")
        assert GPU_MESSAGE.rstrip(".") in (failed.reason or "")
        assert (failed.available_workers, failed.unavailable_workers) == (0, 1)

    async def test_an_image_pull_backoff_fails_naming_the_image(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        controller_reports(kube_api, ready=0)
        image = "ghcr.io/llm-launch/sglang:v0.5.21"
        pulling = [
            waiting("engine", "ImagePullBackOff", f'Back-off pulling image "{image}"', image=image)
        ]
        put_group(kube_api, endpoint, 0, statuses=pulling)
        failed = await observed(backend, endpoint, EndpointStatus.UPDATE_FAILED)
        assert f"cannot pull image '{image}'" in (failed.reason or "")

    async def test_a_crash_loop_fails_with_the_last_log_lines_fetched_once(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        controller_reports(kube_api, ready=0)
        put_group(kube_api, endpoint, 0)
        crashing = [waiting("engine", "CrashLoopBackOff", "back-off 40s", restarts=3, exit_code=1)]
        kube_api.put("pods", lws_pod(LWS, 0, 0, endpoint.id, statuses=crashing))
        log = (
            "".join(f"line {i}\n" for i in range(7))
            + "RuntimeError: NCCL error: unhandled system error\n"
        )
        kube_api.set_log(f"{LWS}-0", "engine", log, previous=True)
        failed = await observed(backend, endpoint, EndpointStatus.UPDATE_FAILED)
        reason = failed.reason or ""
        assert f"container engine of pod {LWS}-0 (group 0, leader) keeps crashing" in reason
        assert reason.endswith("last log lines:\n  line 3\n  line 4\n  line 5\n  line 6\n"
                               "  RuntimeError: NCCL error: unhandled system error")  # fmt: skip
        log_reads = [r for r in kube_api.requests if "container" in r.query]
        await backend.observe(endpoint)
        assert [r for r in kube_api.requests if "container" in r.query] == log_reads
        assert [(r.query["container"], r.query["previous"]) for r in log_reads] == [
            ("engine", "true")
        ]

    async def test_a_group_recreated_again_and_again_fails_with_its_cause(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        controller_reports(kube_api, ready=0)
        put_group(kube_api, endpoint, 0)
        await backend.observe(endpoint)
        for _ in range(3):  # the worker is OOM-killed; the controller recreates the group
            oom = [running(restarts=1, exit_code=137, exit_reason="OOMKilled")]
            kube_api.put("pods", lws_pod(LWS, 0, 1, endpoint.id, statuses=oom))
            for name in (f"{LWS}-0-1", f"{LWS}-0"):
                kube_api.remove("pods", name)
            put_group(kube_api, endpoint, 0)
        failed = await observed(backend, endpoint, EndpointStatus.UPDATE_FAILED)
        assert "group 0 was recreated 3 times without ever becoming ready" in (failed.reason or "")
        assert f"{LWS}-0-1 exited with code 137 (OOMKilled" in (failed.reason or "")

    async def test_a_single_node_endpoint_runs_as_a_deployment(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = an_endpoint(
            endpoint_body(name="chat", min_workers=1, max_workers=1), endpoint_id="ep-one"
        )
        await backend.apply(endpoint)
        assert kube_api.names("deployments") == kube_api.names("services") == [CHAT]
        deployment = kube_api.get("deployments", CHAT)
        assert deployment is not None
        status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        kube_api.set_status("deployments", CHAT, status)
        labels = {
            "app.kubernetes.io/managed-by": "llm-launch",
            "llm-launch.io/endpoint-id": endpoint.id,
        }
        kube_api.put("pods", pod(f"{CHAT}-7d9f-x2x", labels, ready=True))
        await observed(backend, endpoint, EndpointStatus.READY)
        kube_api.set_log(f"{CHAT}-7d9f-x2x", "engine", "serving\n")
        assert await backend.logs(endpoint, 0, "rank-0", 10) == "serving\n"
        assert backend.targets(endpoint) == [f"http://{CHAT}.default.svc"]


class TestLogsAndTeardown:
    async def test_logs_map_group_and_process_to_pod_and_container(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode()
        await backend.apply(endpoint)
        put_group(kube_api, endpoint, 0)
        kube_api.set_log(f"{LWS}-0-1", "engine", "worker says hi\n")
        kube_api.set_log(f"{LWS}-0", "forwarder", "forwarding\n")
        assert await backend.logs(endpoint, 0, "rank-1", 5) == "worker says hi\n"
        assert await backend.logs(endpoint, 0, "forwarder", 5) == "forwarding\n"
        with pytest.raises(NotFound, match="no log for group 3, rank-0"):
            await backend.logs(endpoint, 3, "rank-0", 5)
        with pytest.raises(InvalidRequest):
            await backend.logs(endpoint, 0, "engine", 5)

    async def test_teardown_returns_once_everything_is_gone_and_is_not_undone(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        endpoint = multinode(min_workers=1, max_workers=2)
        await backend.apply(endpoint)
        put_group(kube_api, endpoint, 0)
        await backend.teardown(endpoint)
        for plural in ("leaderworkersets", "services", "horizontalpodautoscalers", "pods"):
            assert kube_api.names(plural) == [], plural
        writes = len(kube_api.writes())
        await backend.apply(endpoint)  # a reconcile pass that listed it before the delete
        await backend.teardown(endpoint)  # repeating a teardown is fine
        assert [r.method for r in kube_api.writes()[writes:]] == []

    async def test_collect_garbage_removes_objects_of_endpoints_that_are_gone(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        await backend.apply(multinode("ep-gone"))
        await backend.apply(an_endpoint(endpoint_body(name="chat"), endpoint_id="ep-live"))
        await backend.collect_garbage({"ep-live"})
        await eventually(lambda: _names(kube_api, "leaderworkersets"), lambda names: names == [])
        assert kube_api.names("deployments") == [CHAT]


async def _names(kube_api: FakeKubeApi, plural: str) -> list[str]:
    return kube_api.names(plural)


def _not_watching(kube_api: FakeKubeApi) -> list[Request]:
    """Requests other than the informers' lists and watches (of everything we manage)."""
    informers = "app.kubernetes.io/managed-by=llm-launch"
    return [r for r in kube_api.requests if r.query.get("labelSelector") != informers]
