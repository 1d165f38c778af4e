"""Each endpoint's NetworkPolicy: its pods reach each other on any port, the forwarder is
reachable from the control plane's API and gateway pods (and a metrics namespace, when
configured) only, and the policy is named, labelled and annotated like the endpoint's
other objects. `admits` reads a rendered policy as the network plugin does, so "who may
connect" is asked of the policy itself, not of its shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_launch.backends.kubernetes.config import KubernetesConfigError, NetworkPolicySettings
from llm_launch.backends.kubernetes.render import ANNOTATION_CONTROL_PLANE, LABEL_ENDPOINT_ID
from llm_launch.config.kubernetes import ConfigFileError, load_installation_config
from tests.builders import seed_body
from tests.unit.kubernetes import (
    ENDPOINT_ID,
    a_config,
    by_kind,
    k8s_name,
    rendered,
    single_node_vllm,
)

ROOT_DIR = Path(__file__).resolve().parents[3]
FORWARDER_PORT = 5000
ENGINE_PORTS = (5005, 5002)  # the engine's and the rendezvous port
NAMESPACE = "inference"  # the endpoints' (a_config's)


def policy(body: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    return by_kind(rendered(body or seed_body(), **config))["NetworkPolicy"]


def peers_on(spec: dict[str, Any], port: int) -> list[dict[str, Any]]:
    """Every peer allowed to reach `port` (rules without ports allow every port)."""
    allowed = []
    for rule in spec["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])]
        if not ports or port in ports:
            allowed += rule["from"]
    return allowed


def deployment_pod_labels(file: str = "deployment.yaml") -> dict[str, str]:
    deployment = yaml.safe_load((ROOT_DIR / "deploy/kubernetes" / file).read_text())
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def gateway_pod_labels() -> dict[str, str]:
    return deployment_pod_labels("gateway-deployment.yaml")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}  # all this module renders
    return selector["matchLabels"].items() <= labels.items()


def admits(
    spec: dict[str, Any], labels: dict[str, str], port: int, namespace: str = NAMESPACE
) -> bool:
    """Whether a pod with `labels` in `namespace` may connect to `port` of a pod the policy
    selects ("Network Policies": a peer with a podSelector alone selects pods of the
    policy's namespace; with a namespaceSelector too, pods of the namespaces it selects)."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in spec["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                in_namespace = _selects(peer["namespaceSelector"], namespace_labels)
            else:
                in_namespace = namespace == NAMESPACE
            if in_namespace and _selects(peer.get("podSelector", {"matchLabels": {}}), labels):
                return True
    return False


class TestWhoReachesThePods:
    @pytest.mark.parametrize("body", [seed_body(), single_node_vllm()], ids=["lws", "deployment"])
    def test_the_policy_selects_every_pod_of_the_endpoint_for_ingress(
        self, body: dict[str, Any]
    ) -> None:
        spec = policy(body)["spec"]
        assert spec["podSelector"] == {"matchLabels": {LABEL_ENDPOINT_ID: ENDPOINT_ID}}
        assert spec["policyTypes"] == ["Ingress"]  # egress stays open (weights downloads)

    @pytest.mark.parametrize("port", [5005, 5002, 29500, FORWARDER_PORT])
    def test_pods_of_the_endpoint_reach_each_other_on_any_port(self, port: int) -> None:
        own = {"podSelector": {"matchLabels": {LABEL_ENDPOINT_ID: ENDPOINT_ID}}}
        assert own in peers_on(policy()["spec"], port)

    @pytest.mark.parametrize("port", [5005, 5002])
    def test_nothing_else_reaches_the_engine_or_rendezvous_port(self, port: int) -> None:
        own = {"podSelector": {"matchLabels": {LABEL_ENDPOINT_ID: ENDPOINT_ID}}}
        assert peers_on(policy()["spec"], port) == [own]

    def test_the_control_plane_pods_of_the_deployment_manifest_reach_the_forwarder(self) -> None:
        control_plane = {"podSelector": {"matchLabels": deployment_pod_labels()}}
        assert control_plane in peers_on(policy()["spec"], FORWARDER_PORT)

    def test_a_control_plane_in_another_namespace_is_selected_there_only(self) -> None:
        settings = NetworkPolicySettings(control_plane_namespace="platform")
        peers = peers_on(policy(network_policy=settings)["spec"], FORWARDER_PORT)
        namespace = {"matchLabels": {"kubernetes.io/metadata.name": "platform"}}
        assert any(p.get("namespaceSelector") == namespace and "podSelector" in p for p in peers)

    def test_a_metrics_namespace_may_scrape_the_forwarder_and_nothing_else(self) -> None:
        settings = NetworkPolicySettings(metrics_namespace="monitoring")
        spec = policy(network_policy=settings)["spec"]
        scraper = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        }
        assert scraper in peers_on(spec, FORWARDER_PORT)
        assert scraper not in peers_on(spec, 5005)

    def test_no_metrics_namespace_by_default(self) -> None:
        peers = peers_on(policy()["spec"], FORWARDER_PORT)
        assert all("namespaceSelector" not in p for p in peers)


class TestTheGatewayPods:
    def test_the_gateway_pods_of_the_gateway_manifest_reach_the_forwarder(self) -> None:
        assert admits(policy()["spec"], gateway_pod_labels(), FORWARDER_PORT)

    @pytest.mark.parametrize("port", ENGINE_PORTS)
    def test_neither_the_gateway_nor_the_api_pods_reach_the_engine(self, port: int) -> None:
        spec = policy()["spec"]
        assert not admits(spec, gateway_pod_labels(), port)
        assert not admits(spec, deployment_pod_labels(), port)

    @pytest.mark.parametrize(
        "labels",
        [
            {},
            {"app.kubernetes.io/name": "llm-launch"},
            {"app.kubernetes.io/component": "gateway"},
            {"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "gateway"},
            {"app.kubernetes.io/name": "llm-launch", "app.kubernetes.io/component": "worker"},
        ],
        ids=["unlabelled", "name-only", "component-only", "other-name", "other-component"],
    )
    def test_other_pods_of_the_namespace_are_refused_the_forwarder(
        self, labels: dict[str, str]
    ) -> None:
        assert not admits(policy()["spec"], labels, FORWARDER_PORT)

    def test_without_gateway_labels_only_the_api_pods_reach_the_forwarder(self) -> None:
        spec = policy(network_policy=NetworkPolicySettings(gateway_pod_labels=None))["spec"]
        assert not admits(spec, gateway_pod_labels(), FORWARDER_PORT)
        assert admits(spec, deployment_pod_labels(), FORWARDER_PORT)

    def test_gateway_pods_are_admitted_from_the_control_planes_namespace_only(self) -> None:
        settings = NetworkPolicySettings(control_plane_namespace="platform")
        spec = policy(network_policy=settings)["spec"]
        assert admits(spec, gateway_pod_labels(), FORWARDER_PORT, namespace="platform")
        assert not admits(spec, gateway_pod_labels(), FORWARDER_PORT, namespace=NAMESPACE)
        assert not admits(spec, gateway_pod_labels(), FORWARDER_PORT, namespace="elsewhere")

    def test_a_configuration_file_from_before_the_gateway_admits_both(self, tmp_path: Path) -> None:
        # What an installation's file said before gateway_pod_labels existed: an upgrade
        # keeps admitting its API pods and admits the new gateway pods.
        old = tmp_path / "config.yaml"
        old.write_text(
            "kubernetes:\n  network_policy:\n    control_plane_pod_labels:\n"
            "      app.kubernetes.io/name: llm-launch\n"
            "      app.kubernetes.io/component: api-server\n"
        )
        settings = load_installation_config(old).kubernetes.network_policy
        spec = policy(network_policy=settings)["spec"]
        assert admits(spec, deployment_pod_labels(), FORWARDER_PORT)
        assert admits(spec, gateway_pod_labels(), FORWARDER_PORT)

    def test_a_configuration_file_may_admit_no_gateway(self, tmp_path: Path) -> None:
        path = tmp_path / "config.yaml"
        path.write_text("kubernetes:\n  network_policy:\n    gateway_pod_labels: null\n")
        assert load_installation_config(path).kubernetes.network_policy.gateway_pod_labels is None


class TestThePolicyObject:
    def test_it_is_named_labelled_and_annotated_like_the_endpoints_objects(self) -> None:
        objects = by_kind(rendered(seed_body()))
        found = objects["NetworkPolicy"]["metadata"]
        workload = objects["LeaderWorkerSet"]["metadata"]
        assert found["name"] == k8s_name("deepseek-r1")
        assert found["labels"] == workload["labels"]
        assert found["annotations"][ANNOTATION_CONTROL_PLANE] == "default"

    def test_it_comes_right_after_the_workload_before_the_service(self) -> None:
        kinds = [o["kind"] for o in rendered(seed_body())]
        assert kinds.index("NetworkPolicy") == kinds.index("LeaderWorkerSet") + 1
        assert kinds.index("NetworkPolicy") < kinds.index("Service")

    def test_it_can_be_turned_off(self) -> None:
        objects = rendered(seed_body(), network_policy=NetworkPolicySettings(enabled=False))
        assert "NetworkPolicy" not in [o["kind"] for o in objects]


class TestSettings:
    def test_an_empty_control_plane_selector_is_refused(self) -> None:
        # An empty selector would let every pod of the namespace call the forwarders.
        with pytest.raises(KubernetesConfigError, match="control_plane_pod_labels"):
            a_config(network_policy=NetworkPolicySettings(control_plane_pod_labels={}))

    def test_an_empty_gateway_selector_is_refused(self) -> None:
        with pytest.raises(KubernetesConfigError, match="gateway_pod_labels"):
            a_config(network_policy=NetworkPolicySettings(gateway_pod_labels={}))

    def test_an_empty_gateway_selector_in_the_file_is_refused_naming_its_key(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "config.yaml"
        path.write_text("kubernetes:\n  network_policy:\n    gateway_pod_labels: {}\n")
        with pytest.raises(ConfigFileError, match=r"network_policy\.gateway_pod_labels must name"):
            load_installation_config(path)

    def test_a_bad_namespace_is_refused(self) -> None:
        with pytest.raises(KubernetesConfigError, match="metrics_namespace"):
            a_config(network_policy=NetworkPolicySettings(metrics_namespace="Monitoring!"))
