"""Turning autoscaling on, changing it or turning it off never drops serving capacity
(issue 9 item 1), against the test API server's server-side apply: a `replicas` that
llm-launch stops sending is removed and defaulted (to 1) unless another manager owns it."""

from __future__ import annotations

import threading
from typing import Any

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.domain.endpoint import Endpoint
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
CHAT = k8s_name("chat")
Object = dict[str, Any]


def multinode(generation: int, **overrides: Any) -> Endpoint:
    return an_endpoint(seed_body(**overrides), endpoint_id="ep-multi", generation=generation)


def single(generation: int, **overrides: Any) -> Endpoint:
    body = endpoint_body(name="chat", **overrides)
    return an_endpoint(body, endpoint_id="ep-single", generation=generation)


class ReplicaHistory:
    """Every `spec.replicas` the API server stored for one workload, in order."""

    def __init__(self, kube_api: FakeKubeApi, plural: str, name: str) -> None:
        self.kube_api, self.plural, self.name = kube_api, plural, name
        self.seen: list[tuple[str, int | None]] = []  # (resourceVersion, replicas)
        self._lock = threading.Lock()
        kube_api.on_change(self._record)

    def _record(self, kind: str, plural: str, obj: Object) -> None:
        if plural == self.plural and obj["metadata"]["name"] == self.name and kind != "DELETED":
            with self._lock:
                self.seen.append((obj["metadata"]["resourceVersion"], obj["spec"].get("replicas")))

    async def values(self) -> list[int | None]:
        """The replicas seen, once the listener has caught up with the stored object."""
        stored = self.kube_api.get(self.plural, self.name)
        assert stored is not None
        version = stored["metadata"]["resourceVersion"]

        async def seen() -> list[str]:
            with self._lock:
                return [v for v, _ in self.seen]

        await eventually(seen, lambda versions: version in versions)
        with self._lock:
            return [replicas for _, replicas in self.seen]


async def _names(kube_api: FakeKubeApi, plural: str) -> list[str]:
    return kube_api.names(plural)


def owns_replicas(obj: Object, manager: str) -> bool:
    return any(
        "f:replicas" in (e["fieldsV1"].get("f:spec") or {})
        for e in obj["metadata"]["managedFields"]
        if e["manager"] == manager
    )


class TestAutoscalingKeepsCapacity:
    async def test_enabling_autoscaling_keeps_every_serving_group(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        history = ReplicaHistory(kube_api, "leaderworkersets", LWS)
        await backend.apply(multinode(1, min_workers=3, max_workers=3))
        await backend.apply(multinode(2, min_workers=2, max_workers=5))
        assert kube_api.names("horizontalpodautoscalers") == [LWS]
        assert set(await history.values()) == {3}  # never 1, not even for a moment
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None and not owns_replicas(lws, "llm-launch")

    async def test_enabling_autoscaling_for_a_deployment_keeps_its_pods(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        history = ReplicaHistory(kube_api, "deployments", CHAT)
        await backend.apply(single(1, min_workers=2, max_workers=2))
        await backend.apply(single(2, min_workers=1, max_workers=4))
        assert min(v or 0 for v in await history.values()) == 2

    async def test_changing_autoscaling_keeps_what_the_autoscaler_scaled_to(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        await backend.apply(multinode(1, min_workers=3, max_workers=3))
        await backend.apply(multinode(2, min_workers=2, max_workers=5))
        kube_api.scale("leaderworkersets", LWS, 5)  # the HPA controller, through /scale
        history = ReplicaHistory(kube_api, "leaderworkersets", LWS)
        await backend.apply(multinode(3, min_workers=2, max_workers=6))
        await backend.apply(multinode(3, min_workers=2, max_workers=6))  # a resync
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None and lws["spec"]["replicas"] == 5
        assert set(await history.values()) <= {5}
        hpa = kube_api.get("horizontalpodautoscalers", LWS)
        assert hpa is not None and hpa["spec"]["maxReplicas"] == 6

    async def test_an_autoscaled_endpoint_created_new_starts_at_min_workers(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        await backend.apply(multinode(1, min_workers=2, max_workers=5))
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None and lws["spec"]["replicas"] == 2

    async def test_disabling_autoscaling_removes_the_hpa_before_setting_the_fixed_count(
        self, backend: KubernetesBackend, kube_api: FakeKubeApi
    ) -> None:
        await backend.apply(multinode(1, min_workers=2, max_workers=5))
        kube_api.scale("leaderworkersets", LWS, 4)
        history = ReplicaHistory(kube_api, "leaderworkersets", LWS)
        await backend.apply(multinode(2, min_workers=4, max_workers=4))
        await eventually(
            lambda: _names(kube_api, "horizontalpodautoscalers"), lambda names: names == []
        )
        assert await history.values() in ([], [4])  # nothing to change: 4 serve, 4 asked
        lws = kube_api.get("leaderworkersets", LWS)
        assert lws is not None and owns_replicas(lws, "llm-launch")
        methods = [(r.method, r.plural) for r in kube_api.writes()]
        hpa_deleted = methods.index(("DELETE", "horizontalpodautoscalers"))
        assert hpa_deleted < len(methods) - methods[::-1].index(("PATCH", "leaderworkersets")) - 1
