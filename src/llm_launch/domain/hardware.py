"""The hardware catalog: which GPU types exist and how Kubernetes selects their nodes.

The catalog is data (loaded from YAML by `llm_launch.config`); validation asks it
whether a `gpu_type` exists (and, for MIG slices, refuses what a slice cannot do), and
the Kubernetes backend reads the GPU's resource name, node labels, tolerations, and the
extra resources and capabilities of multi-node pods from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_launch.domain.errors import FieldError


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration that pods on this GPU type need."""

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


@dataclass(frozen=True)
class MigSlice:
    """What makes a GPU type a MIG slice (NVIDIA Multi-Instance GPU): one hardware-isolated
    part of a whole GPU, e.g. profile "1g.20gb", one of 4 on an H100 80GB.

    A slice has no peer-to-peer, NVLink or CUDA IPC to any other slice (NVIDIA MIG User
    Guide, "Deployment Considerations"), so NCCL cannot shard one model across slices: an
    engine runs on exactly one slice, on one node.
    """

    profile: str  # NVIDIA's profile name, as in the device plugin's resource name
    whole_gpu: str  # the catalog's GPU type of the whole GPU the slices are cut from
    slices_per_gpu: int  # how many slices of this profile one whole GPU holds


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
    # The Kubernetes extended resource one GPU of this type is requested as; None means
    # the installation's `gpu_resource` (nvidia.com/gpu). A MIG slice under the device
    # plugin's "mixed" strategy has its own, e.g. nvidia.com/mig-1g.20gb.
    resource: str | None = None
    mig: MigSlice | None = None

    def resource_name(self, default: str) -> str:
        """The resource to request this GPU as, given the installation's default."""
        return self.resource or default


@dataclass(frozen=True)
class HardwareCatalog:
    """All GPU types this installation can schedule, by name."""

    gpu_types: Mapping[str, GpuType]

    def get(self, name: str) -> GpuType | None:
        return self.gpu_types.get(name)

    def names(self) -> list[str]:
        return sorted(self.gpu_types)

    def slices_per_node(self, gpu: GpuType) -> int | None:
        """For a MIG type: the slices one node holds (slices per GPU x the whole GPU type's
        GPUs per node); None for whole GPUs."""
        if gpu.mig is None:
            return None
        whole = self.gpu_types.get(gpu.mig.whole_gpu)
        per_node = whole.max_gpus_per_node if whole is not None else 1
        return gpu.mig.slices_per_gpu * per_node

    def mig_problems(self, gpu: GpuType, gpus: int, nodes_per_worker: int) -> list[FieldError]:
        """Why an endpoint of `gpus` per node on `nodes_per_worker` nodes cannot run on the
        MIG type `gpu` (none for whole GPUs): an engine runs on one slice, on one node."""
        if gpu.mig is None:
            return []
        why = (
            f"{gpu.name} is one MIG slice ({gpu.mig.profile}; an {gpu.mig.whole_gpu} GPU holds "
            f"{gpu.mig.slices_per_gpu}, a node {self.slices_per_node(gpu)}), and slices have "
            "no peer-to-peer, NVLink or CUDA IPC between them, so NCCL cannot shard a model "
            "across slices; a model that needs more than one slice needs whole GPUs "
            f"(gpu_type {gpu.mig.whole_gpu})"
        )
        asked = {"gpus": gpus, "nodes_per_worker": nodes_per_worker}
        return [
            FieldError(name, f"must be 1 for gpu_type {gpu.name} (got {value}): {why}")
            for name, value in asked.items()
            if value > 1
        ]
