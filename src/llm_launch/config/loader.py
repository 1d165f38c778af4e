"""Load the hardware catalog from YAML (the packaged default, or a file the operator gives)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llm_launch.domain.hardware import GpuType, HardwareCatalog, MigSlice, Toleration
from llm_launch.domain.quantity import is_quantity

# Linux capability names as a container's securityContext takes them (no CAP_ prefix).
_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]*$")
# An extended resource's name: a DNS subdomain prefix, "/", and a name (as nvidia.com/gpu).
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# NVIDIA's MIG profile names: compute slices "g", memory "gb" (1g.20gb, 3g.40gb, 1g.10gb+me).
_MIG_PROFILE = re.compile(r"^[1-7]g\.[0-9]+gb(\+me)?$")
MAX_MIG_SLICES_PER_GPU = 7  # the most GPU instances any MIG-capable GPU holds


class CatalogError(ValueError):
    """The catalog file is missing or malformed; the message names the entry."""


def load_hardware_catalog(path: Path | None = None) -> HardwareCatalog:
    """Read `path`, or the packaged `hardware.yaml` when `path` is None."""
    if path is None:
        text = resources.files("llm_launch.config").joinpath("hardware.yaml").read_text()
        source = "packaged hardware.yaml"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CatalogError(f"cannot read hardware catalog {path}: {exc.strerror}") from exc
        source = str(path)
    return parse_hardware_catalog(yaml.safe_load(text), source)


def parse_hardware_catalog(document: Any, source: str = "catalog") -> HardwareCatalog:
    if not isinstance(document, dict) or not isinstance(document.get("gpu_types"), dict):
        raise CatalogError(f"{source}: expected a mapping with a 'gpu_types' mapping")
    gpu_types: dict[str, GpuType] = {}
    for name, entry in document["gpu_types"].items():
        try:
            gpu_types[name] = _gpu_type(str(name), entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CatalogError(f"{source}: gpu_types.{name} is malformed: {exc}") from exc
        if problem := _device_problem(gpu_types[name]):
            raise CatalogError(f"{source}: gpu_types.{name}: {problem}")
    if not gpu_types:
        raise CatalogError(f"{source}: 'gpu_types' is empty")
    for gpu in gpu_types.values():
        if problem := _mig_problem(gpu, gpu_types):
            raise CatalogError(f"{source}: gpu_types.{gpu.name}: {problem}")
    return HardwareCatalog(gpu_types=gpu_types)


def _gpu_type(name: str, entry: Any) -> GpuType:
    mig = entry.get("mig")
    return GpuType(
        name=name,
        gpu_memory_gib=int(entry["gpu_memory_gib"]),
        # A MIG slice serves one engine alone (domain.hardware.MigSlice): one per request.
        max_gpus_per_node=int(entry.get("max_gpus_per_node", 1 if mig is not None else 8)),
        node_selector={str(k): str(v) for k, v in entry.get("node_selector", {}).items()},
        tolerations=tuple(Toleration(**t) for t in entry.get("tolerations", [])),
        extra_resources={str(k): str(v) for k, v in (entry.get("extra_resources") or {}).items()},
        capabilities=tuple(str(c) for c in entry.get("capabilities") or ()),
        resource=str(entry["resource"]) if entry.get("resource") is not None else None,
        mig=None if mig is None else _mig_slice(mig),
    )


def _mig_slice(entry: Any) -> MigSlice:
    if not isinstance(entry, dict):
        raise TypeError("mig must be a mapping with profile, whole_gpu and slices_per_gpu")
    return MigSlice(
        profile=str(entry["profile"]),
        whole_gpu=str(entry["whole_gpu"]),
        slices_per_gpu=int(entry["slices_per_gpu"]),
    )


def _mig_problem(gpu: GpuType, gpu_types: dict[str, GpuType]) -> str | None:
    """What is wrong with a MIG entry, if anything (whole GPUs: nothing)."""
    mig = gpu.mig
    if mig is None:
        return None
    if not _MIG_PROFILE.match(mig.profile):
        return f"mig.profile: {mig.profile!r} is not a MIG profile name (as 1g.20gb or 3g.40gb)"
    whole = gpu_types.get(mig.whole_gpu)
    if whole is None or whole.mig is not None:
        return f"mig.whole_gpu: {mig.whole_gpu!r} is not a whole-GPU type of this catalog"
    if not 1 <= mig.slices_per_gpu <= MAX_MIG_SLICES_PER_GPU:
        return (
            f"mig.slices_per_gpu must be 1 to {MAX_MIG_SLICES_PER_GPU} (got {mig.slices_per_gpu})"
        )
    if gpu.max_gpus_per_node != 1:
        return (
            "max_gpus_per_node must be 1 for a MIG slice: an engine runs on one slice "
            f"(got {gpu.max_gpus_per_node})"
        )
    return None


def _device_problem(gpu: GpuType) -> str | None:
    """What is wrong with an entry's resource, extra resources or capabilities, if anything."""
    if gpu.resource is not None and not _RESOURCE.match(gpu.resource):
        return (
            f"resource: {gpu.resource!r} is not a device plugin's resource name "
            "(DOMAIN/NAME, as nvidia.com/gpu or nvidia.com/mig-1g.20gb)"
        )
    for resource, amount in gpu.extra_resources.items():
        if "/" not in resource:
            return (
                f"extra_resources: {resource!r} is not a device plugin's resource name "
                "(DOMAIN/NAME, as rdma/hca_shared_devices_a or vpc.amazonaws.com/efa)"
            )
        if not is_quantity(amount):
            return f"extra_resources: {resource}: {amount!r} is not a Kubernetes quantity"
    for capability in gpu.capabilities:
        if not _CAPABILITY.match(capability) or capability.startswith("CAP_"):
            return (
                f"capabilities: {capability!r} is not a capability name as Kubernetes takes "
                "it (upper case, without CAP_, as IPC_LOCK)"
            )
    return None
