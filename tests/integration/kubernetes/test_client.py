"""KubeClient against a real HTTP server speaking the Kubernetes API: requests and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_launch.backends.kubernetes.apply import delete_quietly
from llm_launch.backends.kubernetes.client import LEADER_WORKER_SET, POD, SERVICE, KubeClient
from llm_launch.backends.kubernetes.errors import (
    KubeconfigError,
    KubernetesForbidden,
    KubernetesUnavailable,
)
from llm_launch.domain.errors import Conflict, InvalidRequest, NotFound, UpstreamFailed
from tests.fakes.kube_api import TOKEN, FakeKubeApi, lws_pod


def a_service(name: str = "llm-chat", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"llm-launch.io/endpoint-id": "ep-1", **labels}},
        "spec": {"ports": [{"port": 80, "targetPort": 5000}]},
    }


class TestRequests:
    async def test_create_then_get_and_list_by_label(self, client: KubeClient) -> None:
        created = await client.create(SERVICE, "default", a_service())
        assert created["metadata"]["uid"]
        fetched = await client.get(SERVICE, "default", "llm-chat")
        assert fetched["metadata"]["uid"] == created["metadata"]["uid"]
        await client.create(SERVICE, "default", a_service("other", team="x"))
        listed = await client.list(SERVICE, "default", "team=x")
        assert [i["metadata"]["name"] for i in listed.items] == ["other"]
        assert listed.resource_version

    async def test_apply_is_server_side_apply_with_our_field_manager_and_token(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        await client.apply(SERVICE, "default", a_service())
        request = kube_api.writes("services")[-1]
        assert (request.method, request.content_type) == ("PATCH", "application/apply-patch+yaml")
        assert request.query == {
            "fieldManager": "llm-launch",
            "force": "true",
            "fieldValidation": "Strict",
        }
        assert request.authorization == f"Bearer {TOKEN}"

    async def test_apply_refuses_a_field_the_server_does_not_know_instead_of_dropping_it(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        """With fieldValidation=Strict an unknown field (a CRD older than what we render,
        a typo) is an error that names it, never a silently pruned setting."""
        service = a_service()
        service["spec"]["sessionAfinity"] = "None"
        with pytest.raises(UpstreamFailed, match="sessionAfinity"):
            await client.apply(SERVICE, "default", service)
        assert kube_api.get("services", "llm-chat") is None

    async def test_reapplying_the_same_manifest_changes_nothing(self, client: KubeClient) -> None:
        first = await client.apply(SERVICE, "default", a_service())
        second = await client.apply(SERVICE, "default", a_service())
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    async def test_read_log_returns_the_tail(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.put("pods", lws_pod("llm-chat", 0, 0, "ep-1"))
        kube_api.set_log("llm-chat-0", "engine", "".join(f"line {i}\n" for i in range(10)))
        assert (
            await client.read_log("default", "llm-chat-0", "engine", 3)
            == "line 7\nline 8\nline 9\n"
        )


class TestErrors:
    async def test_creating_an_existing_object_is_our_conflict(self, client: KubeClient) -> None:
        await client.create(SERVICE, "default", a_service())
        with pytest.raises(Conflict, match='services "llm-chat" already exists'):
            await client.create(SERVICE, "default", a_service())

    async def test_a_missing_object_is_our_not_found(self, client: KubeClient) -> None:
        with pytest.raises(NotFound, match='get Service default/nope: services "nope" not found'):
            await client.get(SERVICE, "default", "nope")

    async def test_deleting_a_missing_object_is_not_found_and_quietly_fine(
        self, client: KubeClient
    ) -> None:
        with pytest.raises(NotFound):
            await client.delete(SERVICE, "default", "nope")
        assert await delete_quietly(client, SERVICE, "default", "nope") is False

    async def test_422_invalid_surfaces_as_invalid_request_with_field_paths(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        causes = [
            {"reason": "FieldValueInvalid", "field": "spec.ports[0].port",
             "message": "Invalid value: 0: must be between 1 and 65535"},
            {"reason": "FieldValueRequired", "field": "spec.selector", "message": "Required value"},
        ]  # fmt: skip
        kube_api.fail_next(
            "PATCH", "services", 422, "Invalid", 'Service "llm-chat" is invalid', causes
        )
        with pytest.raises(InvalidRequest) as caught:
            await client.apply(SERVICE, "default", a_service())
        assert [e.field for e in caught.value.errors] == ["spec.ports[0].port", "spec.selector"]
        assert "apply Service default/llm-chat: Invalid value: 0" in caught.value.errors[0].message

    async def test_a_server_error_is_unavailable_and_retryable(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        kube_api.fail_next("GET", "pods", 500, "InternalError", "etcdserver: request timed out")
        with pytest.raises(KubernetesUnavailable, match="etcdserver: request timed out"):
            await client.list(POD, "default", "a=b")

    async def test_forbidden_names_the_missing_permission(
        self, client: KubeClient, kube_api: FakeKubeApi
    ) -> None:
        message = (
            "leaderworkersets.leaderworkerset.x-k8s.io is forbidden: "
            'User "system:serviceaccount:x:y" cannot list'
        )
        kube_api.fail_next("GET", "leaderworkersets", 403, "Forbidden", message)
        with pytest.raises(KubernetesForbidden, match="lack this permission"):
            await client.list(LEADER_WORKER_SET, "default", "a")

    async def test_an_unreachable_server_is_unavailable_not_a_library_error(
        self, tmp_path: Path
    ) -> None:
        dead = FakeKubeApi()
        path = dead.write_kubeconfig(tmp_path / "kubeconfig")  # never started: refused
        dead.stop()
        kube = await KubeClient.connect(str(path), request_timeout_s=2.0)
        try:
            with pytest.raises(KubernetesUnavailable, match="cannot reach the Kubernetes API"):
                await kube.list(POD, "default", "a")
        finally:
            await kube.close()

    async def test_a_missing_kubeconfig_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(KubeconfigError, match="cannot load Kubernetes config"):
            await KubeClient.connect(str(tmp_path / "absent"))

    async def test_every_error_is_an_upstream_or_domain_error(self) -> None:
        assert issubclass(KubernetesUnavailable, UpstreamFailed)
        assert issubclass(KubeconfigError, UpstreamFailed)
