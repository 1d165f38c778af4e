"""Tests of the Kubernetes rendering, and the builders they share.

`an_endpoint(body)` turns a request body (tests/builders.py) into a stored Endpoint with a
fixed id, owner and generation; `rendered(body, **config)` renders it; `k8s_name(name)` is
the object name of OWNER's endpoint `name`; `CASES` are the bodies every rendered object is
validated for (test_render_schemas.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from llm_launch.backends.kubernetes.config import (
    KubernetesConfig,
    NetworkPolicySettings,
    Placement,
)
from llm_launch.backends.kubernetes.render import render_endpoint
from llm_launch.backends.kubernetes.render_names import owner_suffix
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()
ENDPOINT_ID = "end_0123456789abcdef0123456789abcdef"
OWNER = "alice"
FORWARDER_TOKEN = "test-forwarder-token-0123456789abcdefghijklm"
_CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

Manifest = dict[str, Any]


def an_endpoint(
    body: dict[str, Any], *, endpoint_id: str = ENDPOINT_ID, owner: str = OWNER
) -> Endpoint:
    """A stored endpoint for `body`, as the repository would return it."""
    return Endpoint(
        id=endpoint_id,
        owner=owner,
        spec=build_spec(body, CATALOG),
        status=EndpointStatus.UPDATE_PENDING,
        status_reason=None,
        generation=3,
        created_at=_CREATED,
        last_updated_at=_CREATED,
        forwarder_token=FORWARDER_TOKEN,
    )


def k8s_name(name: str, owner: str = OWNER) -> str:
    """`llm-<name>-<owner suffix>`: the workload's name for `owner`'s endpoint `name`."""
    return f"llm-{name}-{owner_suffix(owner, name)}"


def a_config(**overrides: Any) -> KubernetesConfig:
    values: dict[str, Any] = {"namespace": "inference", "catalog": CATALOG}
    values.update(overrides)
    return KubernetesConfig(**values)


def rendered(body: dict[str, Any], **config: Any) -> list[Manifest]:
    return render_endpoint(an_endpoint(body), a_config(**config))


def by_kind(objects: list[Manifest]) -> dict[str, Manifest]:
    kinds = [o["kind"] for o in objects]
    assert len(set(kinds)) == len(kinds), f"one object per kind expected, got {kinds}"
    return {o["kind"]: o for o in objects}


def single_node_sglang(**overrides: Any) -> dict[str, Any]:
    return endpoint_body(
        name="chat-sglang",
        inference_framework="sglang",
        inference_framework_image_tag="v0.5.21",
        min_workers=2,
        max_workers=2,
        **overrides,
    )


def single_node_vllm(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"name": "chat-vllm", "min_workers": 1, "max_workers": 1}
    values.update(overrides)
    return endpoint_body(**values)


def multinode_vllm(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "llama-405b",
        "model_name": "llama-3.1-405b-instruct",
        "gpus": 8,
        "num_shards": 8,
        "gpu_type": "nvidia-hopper-h200",
        "nodes_per_worker": 2,
        "cpus": 96,
        "memory": "1000Gi",
        "storage": "1500Gi",
        "min_workers": 1,
        "max_workers": 1,
        "per_worker": 8,
    }
    values.update(overrides)
    return endpoint_body(**values)


def rdma_catalog() -> HardwareCatalog:
    """The packaged catalog whose H100 (the seed's GPU type) has RDMA devices: the example
    of hardware.yaml (Mellanox k8s-rdma-shared-dev-plugin, IPC_LOCK)."""
    gpu = CATALOG.gpu_types["nvidia-hopper-h100"]
    rdma = replace(
        gpu, extra_resources={"rdma/hca_shared_devices_a": "1"}, capabilities=("IPC_LOCK",)
    )
    return HardwareCatalog({**CATALOG.gpu_types, gpu.name: rdma})


# Every case is rendered and validated against the Kubernetes and LeaderWorkerSet schemas.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "seed": (seed_body(), {}),
    "single-node-sglang": (single_node_sglang(), {}),
    "single-node-vllm": (single_node_vllm(), {}),
    "multinode-vllm": (multinode_vllm(), {}),
    "autoscaled-single-node": (single_node_vllm(min_workers=1, max_workers=5), {}),
    "autoscaled-multinode": (seed_body(min_workers=1, max_workers=12), {}),
    "cpu-only": (single_node_vllm(gpus=0, gpu_type=None, num_shards=1, storage=None), {}),
    "mig-slice": (single_node_vllm(gpu_type="nvidia-hopper-h100-1g20gb", max_workers=3), {}),
    "placement-rdma-network-policy": (
        seed_body(),
        {
            "placement": Placement(
                exclusive_topology_key="topology.kubernetes.io/zone", scheduler_name="volcano"
            ),
            "catalog": rdma_catalog(),
            "network_policy": NetworkPolicySettings(
                control_plane_namespace="platform", metrics_namespace="monitoring"
            ),
            "forwarder_user_id": 10001,
        },
    ),
    "ipv6-configured": (
        seed_body(),
        {
            "plan_options": PlanOptions(ip_family=IpFamily.IPV6),
            "service_account": "engines",
            "image_pull_secrets": ("registry",),
        },
    ),
}
