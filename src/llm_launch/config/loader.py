"""Load the hardware catalog from YAML (the packaged default, or a file the operator gives)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llm_launch.domain.hardware import GpuType, HardwareCatalog, Toleration
from llm_launch.domain.quantity import is_quantity

# Linux capability names as a container's securityContext takes them (no CAP_ prefix).
_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]*$")


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
            gpu_types[name] = GpuType(
                name=str(name),
                gpu_memory_gib=int(entry["gpu_memory_gib"]),
                max_gpus_per_node=int(entry.get("max_gpus_per_node", 8)),
                node_selector={str(k): str(v) for k, v in entry.get("node_selector", {}).items()},
                tolerations=tuple(Toleration(**t) for t in entry.get("tolerations", [])),
                extra_resources={
                    str(k): str(v) for k, v in (entry.get("extra_resources") or {}).items()
                },
                capabilities=tuple(str(c) for c in entry.get("capabilities") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CatalogError(f"{source}: gpu_types.{name} is malformed: {exc}") from exc
        if problem := _device_problem(gpu_types[name]):
            raise CatalogError(f"{source}: gpu_types.{name}: {problem}")
    if not gpu_types:
        raise CatalogError(f"{source}: 'gpu_types' is empty")
    return HardwareCatalog(gpu_types=gpu_types)


def _device_problem(gpu: GpuType) -> str | None:
    """What is wrong with an entry's extra resources or capabilities, if anything."""
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
