"""The gateway's install manifests (deploy/kubernetes/gateway-*.yaml) agree with the code and
with the API server's: its command and environment parse with `llm-launch gateway`'s own
parser into the port the container exposes and the keys and database the API server
uses; its pods are as locked down as the API server's and carry no Kubernetes token; its
Service, disruption budget, autoscaler and spread select its pods and no others; and an
overlay that replaces the placeholder Secrets reaches it too. (That its probes' paths
answer: tests/integration/test_gateway_probes.py; that the forwarders admit its pods:
tests/unit/kubernetes/test_render_network_policy.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup

from llm_launch.cli import app
from tests.integration.test_manifests_validate import (
    BASE,
    documents,
    kustomize,
    needs_kubectl,
    secrets_overlay,
)

API_LABELS = {"app.kubernetes.io/name": "llm-launch", "app.kubernetes.io/component": "api-server"}


def manifest(name: str) -> dict[str, Any]:
    (obj,) = documents((BASE / name).read_text())
    return obj


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def gateway_pod_labels() -> dict[str, str]:
    labels: dict[str, str] = manifest("gateway-deployment.yaml")["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = pod_spec(deployment)["containers"]
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def pod_environment(found: dict[str, Any]) -> dict[str, str]:
    """The variables the container gets: its ConfigMap's, then its own `env` (a Secret's
    value shown as secret:NAME/KEY, a field's as field:PATH)."""
    (config_map,) = [s["configMapRef"]["name"] for s in found["envFrom"]]
    settings = manifest("configmap.yaml")
    assert settings["metadata"]["name"] == config_map
    environment = dict(settings["data"])
    for entry in found["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            environment[entry["name"]] = f"secret:{ref['name']}/{ref['key']}"
        else:
            environment[entry["name"]] = f"field:{source['fieldRef']['fieldPath']}"
    return environment


def parsed_gateway_command(
    found: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The parameters `llm-launch gateway` gets from the container's command and
    environment, read by the command's own parser (a flag it lacks fails here)."""
    program, name, *args = found["command"] + found.get("args", [])
    assert (program, name) == ("llm-launch", "gateway")
    for variable in list(os.environ):
        if variable.startswith("LLM_LAUNCH_"):
            monkeypatch.delenv(variable)
    for variable, value in pod_environment(found).items():
        monkeypatch.setenv(variable, value)
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    with group.commands["gateway"].make_context("gateway", list(args)) as ctx:
        params: dict[str, Any] = dict(ctx.params)
    return params


class TestTheCommand:
    def test_it_parses_into_one_process_on_all_addresses_on_the_exposed_port(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        found = container(manifest("gateway-deployment.yaml"))
        params = parsed_gateway_command(found, monkeypatch)
        (port,) = found["ports"]
        assert params["port"] == port["containerPort"]
        assert params["host"] == "::"
        assert params["processes"] == 1

    def test_it_reads_the_api_servers_keys_file_and_database_secret(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        gateway = manifest("gateway-deployment.yaml")
        params = parsed_gateway_command(container(gateway), monkeypatch)
        api = manifest("deployment.yaml")
        api_env = pod_environment(container(api))
        assert params["database_url"] == api_env["LLM_LAUNCH_DATABASE_URL"]
        assert str(params["api_keys_file"]) == api_env["LLM_LAUNCH_API_KEYS_FILE"]
        mounts = {m["name"]: m["mountPath"] for m in container(gateway)["volumeMounts"]}
        assert params["api_keys_file"].parent == Path(mounts["api-keys"])
        volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
        api_volumes = {v["name"]: v for v in pod_spec(api)["volumes"]}
        assert volumes["api-keys"] == api_volumes["api-keys"]

    def test_the_settings_it_shares_with_the_api_server_come_from_the_same_config_map(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(os.environ, "LLM_LAUNCH_LOG_LEVEL", "unused")
        gateway, api = (
            container(manifest(f)) for f in ("gateway-deployment.yaml", "deployment.yaml")
        )
        assert gateway["envFrom"] == api["envFrom"]
        params = parsed_gateway_command(gateway, monkeypatch)
        assert params["log_level"] == manifest("configmap.yaml")["data"]["LLM_LAUNCH_LOG_LEVEL"]

    def test_the_probes_use_the_named_container_port(self) -> None:
        found = container(manifest("gateway-deployment.yaml"))
        (port,) = found["ports"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert found[probe]["httpGet"]["port"] == port["name"]


class TestThePods:
    def test_they_are_as_locked_down_as_the_api_servers(self) -> None:
        gateway, api = (manifest(f) for f in ("gateway-deployment.yaml", "deployment.yaml"))
        assert pod_spec(gateway)["securityContext"] == pod_spec(api)["securityContext"]
        assert container(gateway)["securityContext"] == container(api)["securityContext"]
        assert container(gateway)["securityContext"]["readOnlyRootFilesystem"] is True
        assert container(gateway)["image"] == container(api)["image"]

    def test_they_carry_no_kubernetes_token(self) -> None:
        pod = pod_spec(manifest("gateway-deployment.yaml"))
        assert pod["automountServiceAccountToken"] is False
        assert "serviceAccountName" not in pod  # no RoleBinding reaches them either

    def test_their_labels_are_not_the_api_servers(self) -> None:
        labels = gateway_pod_labels()
        assert labels["app.kubernetes.io/component"] == "gateway"
        assert not selects(API_LABELS, labels)
        api_service = manifest("service.yaml")
        assert not selects(api_service["spec"]["selector"], labels)


class TestWhatSelectsThem:
    def test_the_deployment_service_budget_and_spread_select_its_pods_only(self) -> None:
        deployment = manifest("gateway-deployment.yaml")
        selector = deployment["spec"]["selector"]["matchLabels"]
        for obj in (manifest("gateway-service.yaml")["spec"]["selector"], selector):
            assert selects(obj, gateway_pod_labels())
            assert not selects(obj, API_LABELS)
        budget = manifest("gateway-poddisruptionbudget.yaml")["spec"]
        assert budget["selector"]["matchLabels"] == selector
        assert budget["maxUnavailable"] == 1
        for constraint in pod_spec(deployment)["topologySpreadConstraints"]:
            assert constraint["labelSelector"]["matchLabels"] == selector

    def test_the_service_targets_the_containers_port(self) -> None:
        (port,) = manifest("gateway-service.yaml")["spec"]["ports"]
        (exposed,) = container(manifest("gateway-deployment.yaml"))["ports"]
        assert port["targetPort"] == exposed["name"]

    def test_the_autoscaler_owns_the_replicas_of_the_gateway_deployment(self) -> None:
        deployment = manifest("gateway-deployment.yaml")
        hpa = manifest("gateway-hpa.yaml")
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            deployment["apiVersion"],
            deployment["kind"],
            deployment["metadata"]["name"],
        )
        assert "replicas" not in deployment["spec"]  # an apply would reset the HPA's choice
        assert hpa["spec"]["minReplicas"] >= 2  # the budget's one eviction leaves one
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "cpu" in container(deployment)["resources"]["requests"]


@needs_kubectl
def test_an_overlay_replacing_the_secrets_reaches_the_gateway(tmp_path: Path) -> None:
    overlay = secrets_overlay(tmp_path)
    objects = {f"{o['kind']}/{o['metadata']['name']}": o for o in kustomize(overlay)}
    replaced = {
        name.removeprefix("Secret/")
        for name, obj in objects.items()
        if name.startswith("Secret/") and "data" in obj and "stringData" not in obj
    }
    gateway, api = (objects[f"Deployment/{n}"] for n in ("llm-launch-gateway", "llm-launch"))
    for deployment in (gateway, api):
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        env = {e["name"]: e for e in container(deployment)["env"]}
        database = env["LLM_LAUNCH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        assert {volumes["api-keys"]["secret"]["secretName"], database} <= replaced
    assert objects["HorizontalPodAutoscaler/llm-launch-gateway"]["metadata"]["namespace"] == (
        "llm-launch"
    )


@pytest.mark.parametrize("name", ["deployment.yaml", "gateway-deployment.yaml"])
def test_the_scrape_annotations_point_at_the_containers_port_and_metrics_path(name: str) -> None:
    deployment = manifest(name)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (port,) = container(deployment)["ports"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"  # served: test_control_plane_metrics
