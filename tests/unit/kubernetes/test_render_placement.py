"""Multi-node placement: LWS exclusive topology, a gang scheduler, and the RDMA devices and
capabilities a GPU type's catalog entry adds to multi-node engine containers."""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch.backends.kubernetes.config import KubernetesConfigError, Placement
from llm_launch.config.loader import CatalogError, parse_hardware_catalog
from tests.builders import seed_body
from tests.unit.kubernetes import (
    CATALOG,
    a_config,
    by_kind,
    rdma_catalog,
    rendered,
    single_node_vllm,
)

EXCLUSIVE = "leaderworkerset.sigs.k8s.io/exclusive-topology"


def templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = by_kind(objects)
    if "LeaderWorkerSet" in kinds:
        lws = kinds["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
        return [lws["leaderTemplate"], lws["workerTemplate"]]
    return [kinds["Deployment"]["spec"]["template"]]


def engine(template: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in template["spec"]["containers"] if c["name"] == "engine"]
    return found


class TestExclusiveTopology:
    def test_the_configured_topology_key_is_the_leaderworkersets_annotation(self) -> None:
        placement = Placement(exclusive_topology_key="cloud.google.com/gke-nodepool")
        lws = by_kind(rendered(seed_body(), placement=placement))["LeaderWorkerSet"]
        assert lws["metadata"]["annotations"][EXCLUSIVE] == "cloud.google.com/gke-nodepool"
        # On the LWS only: the webhook derives the pods' affinities from it.
        for template in templates([lws]):
            assert EXCLUSIVE not in template["metadata"].get("annotations", {})

    def test_without_a_key_there_is_no_annotation(self) -> None:
        lws = by_kind(rendered(seed_body()))["LeaderWorkerSet"]
        assert EXCLUSIVE not in lws["metadata"].get("annotations", {})

    def test_a_key_that_is_no_label_key_is_refused_at_start(self) -> None:
        with pytest.raises(KubernetesConfigError, match="exclusive_topology_key"):
            a_config(placement=Placement(exclusive_topology_key="not a/label/key"))


class TestGangScheduler:
    def test_every_pod_of_a_group_names_the_configured_scheduler(self) -> None:
        objects = rendered(seed_body(), placement=Placement(scheduler_name="volcano"))
        assert [t["spec"]["schedulerName"] for t in templates(objects)] == ["volcano"] * 2

    def test_single_node_pods_keep_the_default_scheduler(self) -> None:
        objects = rendered(single_node_vllm(), placement=Placement(scheduler_name="volcano"))
        assert "schedulerName" not in templates(objects)[0]["spec"]

    def test_no_scheduler_name_by_default(self) -> None:
        assert all("schedulerName" not in t["spec"] for t in templates(rendered(seed_body())))

    def test_a_bad_scheduler_name_is_refused_at_start(self) -> None:
        with pytest.raises(KubernetesConfigError, match="scheduler_name"):
            a_config(placement=Placement(scheduler_name="Volcano Scheduler"))


class TestRdmaDevices:
    def test_multinode_engines_request_the_gpu_types_extra_resources_as_requests_and_limits(
        self,
    ) -> None:
        for template in templates(rendered(seed_body(), catalog=rdma_catalog())):
            resources = engine(template)["resources"]
            assert resources["requests"]["rdma/hca_shared_devices_a"] == "1"
            assert resources["limits"]["rdma/hca_shared_devices_a"] == "1"

    def test_multinode_engines_add_the_gpu_types_capabilities_and_drop_the_rest(self) -> None:
        for template in templates(rendered(seed_body(), catalog=rdma_catalog())):
            capabilities = engine(template)["securityContext"]["capabilities"]
            assert capabilities == {"drop": ["ALL"], "add": ["IPC_LOCK"]}

    def test_the_forwarder_gets_neither_devices_nor_capabilities(self) -> None:
        leader = templates(rendered(seed_body(), catalog=rdma_catalog()))[0]
        (forwarder,) = [c for c in leader["spec"]["containers"] if c["name"] == "forwarder"]
        assert "rdma/hca_shared_devices_a" not in forwarder["resources"]["limits"]
        assert forwarder["securityContext"]["capabilities"] == {"drop": ["ALL"]}

    def test_single_node_engines_take_no_rdma_device(self) -> None:
        body = single_node_vllm(gpu_type="nvidia-hopper-h100")
        (template,) = templates(rendered(body, catalog=rdma_catalog()))
        assert "rdma/hca_shared_devices_a" not in engine(template)["resources"]["limits"]
        assert "add" not in engine(template)["securityContext"]["capabilities"]

    def test_gpu_types_without_extra_resources_render_as_before(self) -> None:
        for template in templates(rendered(seed_body())):
            assert set(engine(template)["resources"]["limits"]) == {
                "cpu",
                "memory",
                "ephemeral-storage",
                "nvidia.com/gpu",
            }


class TestTheCatalogReadsDevices:
    def entry(self, **extra: Any) -> dict[str, Any]:
        return {"gpu_types": {"h100": {"gpu_memory_gib": 80, **extra}}}

    def test_extra_resources_and_capabilities_are_read(self) -> None:
        catalog = parse_hardware_catalog(
            self.entry(extra_resources={"vpc.amazonaws.com/efa": 32}, capabilities=["IPC_LOCK"])
        )
        gpu = catalog.gpu_types["h100"]
        assert gpu.extra_resources == {"vpc.amazonaws.com/efa": "32"}
        assert gpu.capabilities == ("IPC_LOCK",)

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            ({"extra_resources": {"efa": 1}}, "extra_resources"),
            ({"extra_resources": {"rdma/ib": "lots"}}, "rdma/ib"),
            ({"capabilities": ["CAP_IPC_LOCK"]}, "capabilities"),
            ({"capabilities": ["ipc_lock"]}, "capabilities"),
        ],
    )
    def test_a_malformed_device_entry_is_refused_by_name(
        self, extra: dict[str, Any], named: str
    ) -> None:
        with pytest.raises(CatalogError, match=named):
            parse_hardware_catalog(self.entry(**extra))

    def test_the_packaged_catalog_adds_no_device_by_default(self) -> None:
        assert all(not g.extra_resources and not g.capabilities for g in CATALOG.gpu_types.values())
