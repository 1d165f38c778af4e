"""The test API server (tests/fakes/kube_api.py) behaves as a real one where the backend's
correctness depends on it: each test pins one imitated behaviour, through raw HTTP or the
real client, and names the document it follows in the fake's docstrings."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from llm_launch.backends.kubernetes.client import LEADER_WORKER_SET, KubeClient
from llm_launch.backends.kubernetes.errors import ResourceExpired
from tests.fakes.kube_api import TOKEN, FakeKubeApi, pod

Object = dict[str, Any]
LWS = "/apis/leaderworkerset.x-k8s.io/v1/namespaces/default/leaderworkersets"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
SERVICES = "/api/v1/namespaces/default/services"
HPAS = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
APPLY = "application/apply-patch+yaml"


def call(
    api: FakeKubeApi, method: str, path: str, body: Any = None, *, query: str = "", ctype: str = ""
) -> tuple[int, Object, dict[str, list[str]]]:
    """One raw request: (status code, JSON body, headers by name)."""
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        api.url + path + (f"?{query}" if query else ""),
        method=method,
        data=data,
        headers={
            "Content-Type": ctype or "application/json",
            "Authorization": f"Bearer {TOKEN}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            code, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        code, raw, headers = exc.code, exc.read(), exc.headers
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        found.setdefault(name.lower(), []).append(value)
    return code, json.loads(raw), found


def apply(
    api: FakeKubeApi, path: str, obj: Object, manager: str, *, force: bool = False, extra: str = ""
) -> tuple[int, Object, dict[str, list[str]]]:
    query = f"fieldManager={manager}" + ("&force=true" if force else "") + extra
    return call(api, "PATCH", f"{path}/{obj['metadata']['name']}", obj, query=query, ctype=APPLY)


def lws(replicas: int | None = 3, **spec: Any) -> Object:
    container = {"name": "engine", "image": "ghcr.io/x/sglang:v1"}
    body: Object = {
        "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": {"containers": [container]}}}
    }
    if replicas is not None:
        body["replicas"] = replicas
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "lws"},
        "spec": body | spec,
    }


def deployment(replicas: int | None = 3, containers: list[Object] | None = None) -> Object:
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": containers or [{"name": "engine", "image": "ghcr.io/x/e:v1"}]},
    }
    spec: Object = {"selector": {"matchLabels": {"app": "x"}}, "template": template}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}


def managers(obj: Object) -> dict[tuple[str, str], Object]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


class TestServerSideApply:
    def test_an_apply_records_the_appliers_fields_as_fieldsv1(self, kube_api: FakeKubeApi) -> None:
        code, stored, _ = apply(kube_api, DEPLOYMENTS, deployment(), "alice")
        assert code == 201
        (entry,) = stored["metadata"]["managedFields"]
        assert entry["manager"] == "alice" and entry["operation"] == "Apply"
        assert entry["fieldsType"] == "FieldsV1" and entry["apiVersion"] == "apps/v1"
        assert entry["time"].endswith("Z")
        spec = entry["fieldsV1"]["f:spec"]
        assert spec["f:replicas"] == {}
        assert spec["f:template"]["f:spec"]["f:containers"] == {
            'k:{"name":"engine"}': {".": {}, "f:image": {}, "f:name": {}}
        }
        assert "f:apiVersion" not in entry["fieldsV1"]  # stripped, as the server does

    @pytest.mark.parametrize(
        ("path", "build"), [(LWS, lws), (DEPLOYMENTS, deployment)], ids=["lws", "deployment"]
    )
    def test_a_field_the_applier_stops_sending_is_removed_then_defaulted(
        self, kube_api: FakeKubeApi, path: str, build: Any
    ) -> None:
        apply(kube_api, path, build(3), "alice")
        code, stored, _ = apply(kube_api, path, build(None), "alice")
        assert code == 200
        assert stored["spec"]["replicas"] == 1  # the default: the CRD's, and Deployment's

    def test_a_field_another_manager_also_owns_survives_when_the_applier_drops_it(
        self, kube_api: FakeKubeApi
    ) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        apply(kube_api, LWS, {**lws(3), "spec": {"replicas": 3}}, "handover")
        _, stored, _ = apply(kube_api, LWS, lws(None), "alice")
        assert stored["spec"]["replicas"] == 3
        assert "f:replicas" in managers(stored)[("handover", "Apply")]["f:spec"]
        assert "f:replicas" not in managers(stored)[("alice", "Apply")]["f:spec"]

    def test_lists_with_merge_keys_merge_by_key_and_atomic_lists_are_replaced(
        self, kube_api: FakeKubeApi
    ) -> None:
        engine = {"name": "engine", "image": "e:v1", "env": [{"name": "A", "value": "1"}]}
        first = deployment(containers=[engine])
        first["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
        apply(kube_api, DEPLOYMENTS, first, "alice")
        second = deployment(
            containers=[
                {"name": "engine", "env": [{"name": "B", "value": "2"}]},
                {"name": "sidecar", "image": "s:v1"},
            ]
        )
        second["spec"].pop("replicas")
        second["spec"]["template"]["spec"]["tolerations"] = [{"key": "b", "operator": "Exists"}]
        code, stored, _ = apply(kube_api, DEPLOYMENTS, second, "bob", force=True)
        assert code == 200
        pod_spec = stored["spec"]["template"]["spec"]
        assert [c["name"] for c in pod_spec["containers"]] == ["engine", "sidecar"]
        assert pod_spec["containers"][0]["image"] == "e:v1"
        assert [e["name"] for e in pod_spec["containers"][0]["env"]] == ["A", "B"]
        assert pod_spec["tolerations"] == [{"key": "b", "operator": "Exists"}]  # atomic

    def test_a_conflicting_apply_is_a_409_with_field_manager_conflict_causes(
        self, kube_api: FakeKubeApi
    ) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        code, body, _ = apply(kube_api, LWS, lws(5), "bob")
        assert code == 409 and body["reason"] == "Conflict"
        assert body["message"] == (
            'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
        )
        assert body["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "alice"',
                "field": ".spec.replicas",
            }
        ]
        assert kube_api.get("leaderworkersets", "lws")["spec"]["replicas"] == 3  # type: ignore[index]
        # The same value is no conflict: both own it.
        assert apply(kube_api, LWS, lws(3), "carol")[0] == 200
        code, stored, _ = apply(kube_api, LWS, lws(5), "bob", force=True)
        assert code == 200 and stored["spec"]["replicas"] == 5
        owners = managers(stored)
        assert "f:replicas" in owners[("bob", "Apply")]["f:spec"]
        assert "f:replicas" not in owners[("alice", "Apply")]["f:spec"]
        assert "f:replicas" not in owners[("carol", "Apply")]["f:spec"]

    def test_a_non_apply_write_is_an_update_of_its_manager_taking_what_it_changed(
        self, kube_api: FakeKubeApi
    ) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        code, stored, _ = call(
            kube_api,
            "PATCH",
            f"{LWS}/lws",
            {"spec": {"replicas": 4}},
            query="fieldManager=kubectl-edit",
            ctype="application/merge-patch+json",
        )
        assert code == 200
        owners = managers(stored)
        assert owners[("kubectl-edit", "Update")] == {"f:spec": {"f:replicas": {}}}
        assert "f:replicas" not in owners[("alice", "Apply")]["f:spec"]

    def test_the_scale_hook_writes_replicas_as_the_hpa_controller_does(
        self, kube_api: FakeKubeApi
    ) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        scaled = kube_api.scale("leaderworkersets", "lws", 4)
        (entry,) = [e for e in scaled["metadata"]["managedFields"] if e["operation"] == "Update"]
        assert (entry["manager"], entry["subresource"]) == ("kube-controller-manager", "scale")
        assert entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
        # alice lost replicas to the controller, so dropping it keeps the scaled value.
        _, stored, _ = apply(kube_api, LWS, lws(None), "alice")
        assert stored["spec"]["replicas"] == 4

    def test_the_scale_subresource_reads_and_writes_replicas(self, kube_api: FakeKubeApi) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        code, scale, _ = call(kube_api, "GET", f"{LWS}/lws/scale")
        assert code == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
        code, scale, _ = call(
            kube_api,
            "PATCH",
            f"{LWS}/lws/scale",
            {"spec": {"replicas": 2}},
            query="fieldManager=hpa",
            ctype="application/merge-patch+json",
        )
        assert code == 200 and scale["spec"]["replicas"] == 2
        stored = kube_api.get("leaderworkersets", "lws")
        assert stored is not None and stored["spec"]["replicas"] == 2
        assert any(e.get("subresource") == "scale" for e in stored["metadata"]["managedFields"])

    def test_an_apply_that_changes_nothing_stores_nothing(self, kube_api: FakeKubeApi) -> None:
        _, first, _ = apply(kube_api, LWS, lws(3), "alice")
        _, second, _ = apply(kube_api, LWS, lws(3), "alice")
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


class TestValidation:
    def test_strict_field_validation_refuses_unknown_fields_with_a_400(
        self, kube_api: FakeKubeApi
    ) -> None:
        code, body, _ = apply(
            kube_api, LWS, lws(3, bogus=1), "alice", extra="&fieldValidation=Strict"
        )
        assert code == 400 and body["reason"] == "BadRequest"
        assert ".spec.bogus: field not declared in schema" in body["message"]
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
        service["spec"] = {"ports": [{"port": 80, "bogus": True}]}
        code, body, _ = call(kube_api, "POST", SERVICES, service, query="fieldValidation=Strict")
        assert code == 400
        assert body["message"] == 'strict decoding error: unknown field "spec.ports[0].bogus"'
        assert kube_api.names("leaderworkersets") == [] and kube_api.names("services") == []

    def test_without_strict_unknown_fields_are_pruned_with_a_warning(
        self, kube_api: FakeKubeApi
    ) -> None:
        code, stored, headers = apply(kube_api, LWS, lws(3, bogus=1), "alice")
        assert code == 201 and "bogus" not in stored["spec"]
        assert headers["warning"] == ['299 - "unknown field \\"spec.bogus\\""']

    def test_strict_field_validation_refuses_duplicate_fields(self, kube_api: FakeKubeApi) -> None:
        raw = b'{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, '
        raw += b'"type": "A", "type": "B"}'
        path = "/api/v1/namespaces/default/secrets"
        code, body, _ = call(kube_api, "POST", path, raw, query="fieldValidation=Strict")
        assert code == 400 and 'duplicate field "type"' in body["message"]
        code, stored, headers = call(kube_api, "POST", path, raw)
        assert code == 201 and stored["type"] == "B"  # the last one wins
        assert headers["warning"] == ['299 - "duplicate field \\"type\\""']


class TestDefaults:
    def test_built_in_defaults_are_filled_in_as_kubernetes_documents_them(
        self, kube_api: FakeKubeApi
    ) -> None:
        _, stored, _ = apply(kube_api, DEPLOYMENTS, deployment(None), "alice")
        spec = stored["spec"]
        assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
        assert spec["progressDeadlineSeconds"] == 600
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        }
        container = spec["template"]["spec"]["containers"][0]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert spec["template"]["spec"]["restartPolicy"] == "Always"
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
        service["spec"] = {"selector": {"app": "x"}, "ports": [{"port": 80}]}
        _, stored, _ = apply(kube_api, SERVICES, service, "alice")
        assert stored["spec"]["type"] == "ClusterIP" and stored["spec"]["sessionAffinity"] == "None"
        assert stored["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
        allocated = stored["spec"]["clusterIP"]
        _, again, _ = apply(kube_api, SERVICES, service, "alice")
        assert again["spec"]["clusterIP"] == allocated  # kept, not allocated again
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
        hpa |= {"metadata": {"name": "h"}, "spec": {"maxReplicas": 3, "scaleTargetRef": {}}}
        _, stored, _ = apply(kube_api, HPAS, hpa, "alice")
        assert stored["spec"]["minReplicas"] == 1

    def test_leaderworkerset_defaults_come_from_its_crd(self, kube_api: FakeKubeApi) -> None:
        _, stored, _ = apply(kube_api, LWS, lws(None), "alice")
        spec = stored["spec"]
        assert spec["replicas"] == 1 and spec["startupPolicy"] == "LeaderCreated"
        assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
        assert "rolloutStrategy" not in spec  # no default for the object itself


class TestResourceVersions:
    def test_a_stale_resource_version_is_a_409_on_put_and_patch(
        self, kube_api: FakeKubeApi
    ) -> None:
        _, first, _ = apply(kube_api, LWS, lws(3), "alice")
        apply(kube_api, LWS, lws(4), "alice")
        stale = {
            **lws(5),
            "metadata": {
                "name": "lws",
                **{"resourceVersion": first["metadata"]["resourceVersion"]},
            },
        }
        message = (
            'Operation cannot be fulfilled on leaderworkersets.leaderworkerset.x-k8s.io "lws": '
            "the object has been modified; please apply your changes to the latest version "
            "and try again"
        )
        for method, ctype in (("PUT", ""), ("PATCH", "application/merge-patch+json")):
            code, body, _ = call(kube_api, method, f"{LWS}/lws", stale, ctype=ctype)
            assert (code, body["reason"], body["message"]) == (409, "Conflict", message)
        assert apply(kube_api, LWS, stale, "alice")[0] == 409
        assert kube_api.get("leaderworkersets", "lws")["spec"]["replicas"] == 4  # type: ignore[index]


class TestWatches:
    async def test_a_watch_asking_for_bookmarks_gets_them_with_the_current_version(
        self, kube_api: FakeKubeApi, client: KubeClient
    ) -> None:
        kube_api.bookmark_interval_s = 0.1
        apply(kube_api, LWS, lws(3), "alice")
        version = (await client.list(LEADER_WORKER_SET, "default", "")).resource_version
        stream = client.watch(LEADER_WORKER_SET, "default", "", version, timeout_s=5)
        first = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
        assert first.type == "BOOKMARK"
        assert first.object == {
            "kind": "LeaderWorkerSet",
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "metadata": {"resourceVersion": version},
        }

    async def test_a_watch_from_a_version_older_than_the_history_is_410_expired(
        self, kube_api: FakeKubeApi, client: KubeClient
    ) -> None:
        apply(kube_api, LWS, lws(3), "alice")
        old = (await client.list(LEADER_WORKER_SET, "default", "")).resource_version
        apply(kube_api, LWS, lws(4), "alice")
        kube_api.expire_watches()
        with pytest.raises(ResourceExpired):
            async for _ in client.watch(LEADER_WORKER_SET, "default", "", old, timeout_s=5):
                pass


class TestEventsAndHooks:
    def test_events_are_listed_by_field_selector_and_aggregated_by_count(
        self, kube_api: FakeKubeApi
    ) -> None:
        first, second = kube_api.put("pods", pod("p-0", {})), kube_api.put("pods", pod("p-1", {}))
        message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        for _ in range(2):
            kube_api.record_event(first, "FailedScheduling", message)
        kube_api.record_event(second, "FailedScheduling", message)
        kube_api.record_event(first, "Pulled", "pulled", type="Normal", component="kubelet")
        selector = "involvedObject.name=p-0,involvedObject.kind=Pod,reason=FailedScheduling"
        code, body, _ = call(
            kube_api, "GET", "/api/v1/namespaces/default/events", query=f"fieldSelector={selector}"
        )
        assert code == 200
        (found,) = body["items"]
        assert (found["count"], found["type"], found["message"]) == (2, "Warning", message)
        assert found["source"] == {"component": "default-scheduler"}

    def test_on_change_sees_every_stored_change_in_order(self, kube_api: FakeKubeApi) -> None:
        seen: list[tuple[str, str, str]] = []
        done = threading.Event()

        def listener(kind: str, plural: str, obj: Object) -> None:
            seen.append((kind, plural, obj["metadata"]["name"]))
            if kind == "DELETED":
                done.set()

        kube_api.on_change(listener)
        apply(kube_api, LWS, lws(3), "alice")
        kube_api.put("pods", pod("p-0", {}))
        kube_api.remove("pods", "p-0")
        assert done.wait(10)
        assert seen == [
            ("ADDED", "leaderworkersets", "lws"),
            ("ADDED", "pods", "p-0"),
            ("DELETED", "pods", "p-0"),
        ]
