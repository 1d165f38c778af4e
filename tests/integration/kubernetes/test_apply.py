"""Apply, prune, delete-and-wait and garbage collection against the local API server."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest

from llm_launch.backends.kubernetes.apply import (
    apply_objects,
    collect_garbage,
    delete_endpoint,
    prune,
)
from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.errors import DeletionTimeout, KubernetesError
from llm_launch.domain.errors import Conflict
from tests.fakes.kube_api import FakeKubeApi, lws_pod

EID = "ep-aaaa"


def labelled(kind: str, api_version: str, name: str, endpoint_id: str = EID) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "llm-launch",
                "llm-launch.io/endpoint-id": endpoint_id,
            },
            "annotations": {
                "llm-launch.io/generation": "1",
                "llm-launch.io/control-plane": "default",
            },
        },
        "spec": {"replicas": 1} if kind != "Service" else {"ports": [{"port": 80}]},
    }


def objects(*, autoscaled: bool = False, endpoint_id: str = EID) -> list[dict[str, Any]]:
    found = [
        labelled("LeaderWorkerSet", "leaderworkerset.x-k8s.io/v1", "llm-chat", endpoint_id),
        labelled("Service", "v1", "llm-chat-leader", endpoint_id),
    ]
    if autoscaled:
        hpa = labelled("HorizontalPodAutoscaler", "autoscaling/v2", "llm-chat", endpoint_id)
        hpa["spec"] = {"minReplicas": 1, "maxReplicas": 3}
        found.append(hpa)
    return found


class TestApply:
    async def test_creates_every_object(self, client: KubeClient, kube_api: FakeKubeApi) -> None:
        await apply_objects(client, "default", EID, objects(autoscaled=True))
        assert kube_api.names("leaderworkersets") == ["llm-chat"]
        assert kube_api.names("services") == ["llm-chat-leader"]
        assert kube_api.names("horizontalpodautoscalers") == ["llm-chat"]

    async def test_a_second_apply_of_the_same_objects_changes_nothing(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects())
        before = kube_api.get("leaderworkersets", "llm-chat")
        await apply_objects(client, "default", EID, objects())
        after = kube_api.get("leaderworkersets", "llm-chat")
        assert before is not None and after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["metadata"]["generation"] == 1

    async def test_a_changed_spec_updates_and_keeps_fields_others_own(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects())
        service = kube_api.get("services", "llm-chat-leader")
        assert service is not None
        service["spec"]["clusterIP"] = "10.0.0.7"  # allocated by the API server
        kube_api.put("services", service)
        changed = objects()
        changed[0]["spec"]["replicas"] = 2
        await apply_objects(client, "default", EID, changed)
        lws, service = (
            kube_api.get("leaderworkersets", "llm-chat"),
            kube_api.get("services", "llm-chat-leader"),
        )
        assert lws is not None and service is not None
        assert (lws["spec"]["replicas"], lws["metadata"]["generation"]) == (2, 2)
        assert service["spec"]["clusterIP"] == "10.0.0.7"

    async def test_an_object_of_another_endpoint_is_not_taken_over(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.put("services", labelled("Service", "v1", "llm-chat-leader", "ep-someone-else"))
        with pytest.raises(Conflict, match=r"llm-chat-leader .* is taken") as refused:
            await apply_objects(client, "default", EID, objects())
        assert "ep-someone-else" not in refused.value.message
        service = kube_api.get("services", "llm-chat-leader")
        assert service is not None
        assert service["metadata"]["labels"]["llm-launch.io/endpoint-id"] == "ep-someone-else"

    async def test_a_409_on_apply_is_retried(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.fail_next(
            "PATCH", "leaderworkersets", 409, "Conflict", "the object has been modified"
        )
        await apply_objects(client, "default", EID, objects())
        assert len(kube_api.writes("leaderworkersets")) == 2
        assert kube_api.names("leaderworkersets") == ["llm-chat"]

    async def test_a_409_that_persists_is_our_conflict(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.fail_next("PATCH", "leaderworkersets", 409, "Conflict", "modified", times=10)
        with pytest.raises(Conflict, match="apply LeaderWorkerSet default/llm-chat: modified"):
            await apply_objects(client, "default", EID, objects())

    async def test_a_missing_leaderworkerset_crd_says_to_install_it(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.uninstalled.add("leaderworkersets")
        with pytest.raises(KubernetesError, match="LeaderWorkerSet controller and CRD"):
            await apply_objects(client, "default", EID, objects())

    async def test_objects_the_render_no_longer_has_are_pruned(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects(autoscaled=True))
        await apply_objects(client, "default", EID, objects(autoscaled=False))
        assert [r.method for r in kube_api.writes("horizontalpodautoscalers")] == [
            "PATCH",
            "DELETE",
        ]
        assert kube_api.names("leaderworkersets") == ["llm-chat"]
        assert await prune(client, "default", EID, {("LeaderWorkerSet", "llm-chat")}) == [
            "Service/llm-chat-leader"
        ]


class TestDelete:
    async def test_delete_waits_until_the_objects_and_their_pods_are_gone(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects())
        owner = kube_api.get("leaderworkersets", "llm-chat")
        assert owner is not None
        kube_api.put("pods", lws_pod("llm-chat", 0, 0, EID, owner_uid=owner["metadata"]["uid"]))
        kube_api.hold("pods", "llm-chat-0")  # a pod that takes its time to terminate
        timer = threading.Timer(0.4, kube_api.release, ("pods", "llm-chat-0"))
        timer.start()
        started = asyncio.get_running_loop().time()
        await delete_endpoint(client, "default", EID, timeout_s=5, poll_s=0.05)
        assert asyncio.get_running_loop().time() - started >= 0.35
        assert kube_api.names("pods") == kube_api.names("leaderworkersets") == []
        assert kube_api.names("services") == []

    async def test_delete_uses_foreground_propagation(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects())
        await delete_endpoint(client, "default", EID, timeout_s=5, poll_s=0.05)
        deletes = [r for r in kube_api.writes() if r.method == "DELETE"]
        assert {r.body["propagationPolicy"] for r in deletes} == {"Foreground"}

    async def test_delete_that_never_finishes_times_out_naming_what_is_left(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await apply_objects(client, "default", EID, objects())
        kube_api.hold("leaderworkersets", "llm-chat")
        with pytest.raises(DeletionTimeout, match=r"LeaderWorkerSet llm-chat \(finalizers: "):
            await delete_endpoint(client, "default", EID, timeout_s=0.3, poll_s=0.05)

    async def test_deleting_what_is_already_gone_is_fine(self, client: KubeClient) -> None:
        await delete_endpoint(client, "default", EID, timeout_s=1, poll_s=0.05)


async def test_garbage_collection_deletes_only_applied_objects_of_dead_endpoints(
    client: KubeClient, kube_api: FakeKubeApi
) -> None:
    await apply_objects(client, "default", "ep-live", objects(endpoint_id="ep-live"))
    dead = objects(endpoint_id="ep-dead")
    for obj in dead:
        obj["metadata"]["name"] += "-dead"
    await apply_objects(client, "default", "ep-dead", dead)
    by_hand = copy.deepcopy(objects(endpoint_id="ep-rendered")[1])
    by_hand["metadata"]["name"] = "rendered-by-hand"
    del by_hand["metadata"]["annotations"]  # `llm-launch render` output has no generation
    kube_api.put("services", by_hand)
    others = copy.deepcopy(objects(endpoint_id="ep-theirs")[1])
    others["metadata"]["name"] = "another-control-planes"
    others["metadata"]["annotations"]["llm-launch.io/control-plane"] = "staging"
    kube_api.put("services", others)
    deleted = await collect_garbage(client, "default", {"ep-live"}, "default")
    assert sorted(deleted) == ["LeaderWorkerSet/llm-chat-dead", "Service/llm-chat-leader-dead"]
    assert "rendered-by-hand" in kube_api.names("services")
    assert "another-control-planes" in kube_api.names("services")
