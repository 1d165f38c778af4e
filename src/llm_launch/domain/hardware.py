"""The hardware catalog: which GPU types exist and how Kubernetes selects their nodes.

The catalog is data (loaded from YAML by `llm_launch.config`); validation asks it
whether a `gpu_type` exists, and the Kubernetes backend reads node labels,
tolerations, and the extra resources and capabilities of multi-node pods from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration that pods on this GPU type need."""

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


@dataclass(frozen=True)
class GpuType:
    """One GPU model, as users name it in `gpu_type`."""

    name: str
    gpu_memory_gib: int
    max_gpus_per_node: int
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    # Multi-node pods only: device-plugin resources each engine container asks for (name ->
    # quantity, e.g. {"rdma/hca_shared_devices_a": "1"} or {"vpc.amazonaws.com/efa": "32"}),
    # so NCCL between the nodes of a group runs over RDMA instead of TCP; and the Linux
    # capabilities the engine container needs for them (IPC_LOCK: RDMA pins the memory it
    # registers with the NIC, beyond the default locked-memory limit).
    extra_resources: Mapping[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardwareCatalog:
    """All GPU types this installation can schedule, by name."""

    gpu_types: Mapping[str, GpuType]

    def get(self, name: str) -> GpuType | None:
        return self.gpu_types.get(name)

    def names(self) -> list[str]:
        return sorted(self.gpu_types)
