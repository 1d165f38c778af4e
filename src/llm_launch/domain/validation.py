"""The rules an EndpointSpec must satisfy, each reported with its field path.

Every rule appends to one list, so a user sees all problems of a request at once
(like the LeaderWorkerSet webhook), and nothing is persisted unless the list is empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.frameworks import (
    KNOWN_UNSUPPORTED_FRAMEWORKS,
    MULTINODE_FRAMEWORKS,
    RESERVED_ENGINE_ARGS,
    SUPPORTED_QUANTIZATIONS,
    InferenceFramework,
    flag_name,
)
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.names import (
    dns1123_label_problem,
    label_key_problem,
    label_value_problem,
    max_name_length,
)
from llm_launch.domain.quantity import parse_quantity
from llm_launch.domain.spec import EndpointSpec

SUPPORTED_ENDPOINT_TYPES = ("sync", "streaming")
CHECKPOINT_SCHEMES = ("s3://", "gs://", "hf://", "file://")
_ENGINE_ARG_KEY = re.compile(r"^-{0,2}[A-Za-z][A-Za-z0-9]*([-_][A-Za-z0-9]+)*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass
class Problems:
    """Collected rule violations."""

    errors: list[FieldError] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidRequest(self.errors)


def validate_spec(spec: EndpointSpec, catalog: HardwareCatalog) -> Problems:
    """Check every rule; return the problems found (empty when the spec is valid)."""
    problems = Problems()
    for rule in _RULES:
        rule(spec, catalog, problems)
    return problems


def _check_framework(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    supported = ", ".join(f.value for f in InferenceFramework)
    if spec.inference_framework in KNOWN_UNSUPPORTED_FRAMEWORKS:
        p.add(
            "inference_framework",
            f"{spec.inference_framework!r} is not supported by llm-launch; use one of {supported}",
        )
    elif spec.inference_framework not in set(InferenceFramework):
        p.add(
            "inference_framework",
            f"unknown framework {spec.inference_framework!r}; use one of {supported}",
        )
    if spec.endpoint_type not in SUPPORTED_ENDPOINT_TYPES:
        p.add(
            "endpoint_type",
            f"{spec.endpoint_type!r} is not supported; use 'sync' or 'streaming' "
            "(both serve sync and streaming requests)",
        )
    if not _MODEL_NAME.match(spec.model_name or ""):
        p.add(
            "model_name",
            "must be 1-256 characters of letters, digits and . _ / : @ + -, "
            "starting with a letter or digit",
        )
    if spec.source != "hugging_face":
        p.add("source", f"{spec.source!r} is not supported; the only source is 'hugging_face'")
    if not _IMAGE_TAG.match(spec.inference_framework_image_tag or ""):
        p.add("inference_framework_image_tag", "must be a valid container image tag")


def _check_name(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    problem = dns1123_label_problem(spec.name)
    if problem:
        p.add("name", problem)
        return
    limit = max_name_length(nodes_per_worker=spec.nodes_per_worker, max_workers=spec.max_workers)
    if len(spec.name) > limit:
        p.add(
            "name",
            f"must be at most {limit} characters for an endpoint with nodes_per_worker="
            f"{spec.nodes_per_worker} and max_workers={spec.max_workers} "
            f"(got {len(spec.name)}), so that its Kubernetes objects stay within their limits",
        )


def _check_workers(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    if spec.min_workers < 0:
        p.add("min_workers", f"must be >= 0 (got {spec.min_workers})")
    if spec.max_workers < spec.min_workers:
        p.add("max_workers", f"must be >= min_workers ({spec.max_workers} < {spec.min_workers})")
    if spec.per_worker < 1:
        p.add("per_worker", f"must be >= 1 (got {spec.per_worker})")


def _check_resources(spec: EndpointSpec, catalog: HardwareCatalog, p: Problems) -> None:
    _check_quantity(p, "cpus", str(spec.cpus), positive=True)
    _check_quantity(p, "memory", spec.memory, positive=True)
    if spec.storage is not None:
        _check_quantity(p, "storage", spec.storage, positive=True)
    if spec.gpus < 0:
        p.add("gpus", f"must be >= 0 (got {spec.gpus})")
    elif spec.gpus > 0 and spec.gpu_type is None:
        p.add("gpu_type", f"is required when gpus > 0; one of {', '.join(catalog.names())}")
    elif spec.gpus == 0 and spec.gpu_type is not None:
        p.add("gpus", f"must be >= 1 when gpu_type is set (gpu_type is {spec.gpu_type!r})")
    if spec.gpu_type is not None:
        gpu = catalog.get(spec.gpu_type)
        if gpu is None:
            p.add(
                "gpu_type",
                f"unknown GPU type {spec.gpu_type!r}; one of {', '.join(catalog.names())}",
            )
        elif spec.gpus > gpu.max_gpus_per_node:
            p.add(
                "gpus",
                f"{spec.gpu_type} nodes have at most {gpu.max_gpus_per_node} GPUs "
                f"(got {spec.gpus})",
            )
    if spec.gpus >= 1 and spec.num_shards != spec.gpus:
        p.add(
            "num_shards",
            f"must equal gpus, the GPUs per node the engine shards over ({spec.num_shards} != "
            f"{spec.gpus}); a group uses gpus x nodes_per_worker GPUs in all",
        )
    elif spec.gpus == 0 and spec.num_shards != 1:
        p.add("num_shards", f"must be 1 for a CPU-only endpoint (got {spec.num_shards})")


def _check_quantity(p: Problems, path: str, value: str, *, positive: bool) -> None:
    try:
        amount = parse_quantity(value)
    except ValueError as exc:
        p.add(path, str(exc))
        return
    if positive and amount <= Decimal(0):
        p.add(path, f"must be > 0 (got {value!r})")


def _check_multinode(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    if spec.nodes_per_worker < 1:
        p.add("nodes_per_worker", f"must be >= 1 (got {spec.nodes_per_worker})")
        return
    if not spec.is_multinode:
        return
    if spec.inference_framework not in MULTINODE_FRAMEWORKS:
        p.add("nodes_per_worker", "multinode endpoints are only supported for vLLM and SGLang")
    if spec.endpoint_type != "streaming":
        p.add(
            "endpoint_type",
            f"must be 'streaming' for multinode endpoints (got {spec.endpoint_type!r})",
        )
    if spec.gpus < 1:
        p.add("gpus", "multinode endpoints need gpus >= 1 on every node")


def _check_engine_options(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    framework = _framework(spec)
    if spec.quantize is not None and framework is not None:
        allowed = SUPPORTED_QUANTIZATIONS[framework]
        if spec.quantize not in allowed:
            p.add(
                "quantize",
                f"{spec.quantize!r} is not supported by {framework.value}; "
                f"use one of {', '.join(sorted(allowed))}",
            )
    if spec.checkpoint_path is not None:
        path = spec.checkpoint_path
        scheme = next((s for s in CHECKPOINT_SCHEMES if path.startswith(s)), None)
        if scheme is None and not path.startswith("/"):
            p.add(
                "checkpoint_path",
                "must start with s3://, gs://, hf://, file:// or be an absolute path",
            )
        elif scheme is not None and not path[len(scheme) :].strip("/"):
            p.add("checkpoint_path", f"names no object after {scheme}")
    for key, value in spec.engine_args.items():
        path = f"engine_args.{key}"
        if isinstance(value, list) and not value:
            p.add(path, "an empty list cannot be passed; leave the flag out")
        elif isinstance(value, list) and any(str(v).startswith("-") for v in value):
            p.add(path, "list items may not start with '-' (they would be read as flags)")
        if not _ENGINE_ARG_KEY.match(key):
            p.add(path, "must be a flag name such as 'context-length' or 'mem_fraction_static'")
        elif framework is not None and flag_name(key) in RESERVED_ENGINE_ARGS[framework]:
            p.add(
                path,
                f"--{flag_name(key)} is set by llm-launch from the request "
                "and cannot be overridden",
            )


def _check_labels(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    for key, value in spec.labels.items():
        problem = label_key_problem(key)
        if problem:
            p.add(f"labels.{key}", problem)
        if not isinstance(value, str):
            p.add(f"labels.{key}", "label values must be strings")
            continue
        problem = label_value_problem(value)
        if problem:
            p.add(f"labels.{key}", problem)


def _framework(spec: EndpointSpec) -> InferenceFramework | None:
    try:
        return InferenceFramework(spec.inference_framework)
    except ValueError:
        return None


_Rule = Callable[[EndpointSpec, HardwareCatalog, Problems], None]
_RULES: tuple[_Rule, ...] = (
    _check_framework,
    _check_name,
    _check_workers,
    _check_resources,
    _check_multinode,
    _check_engine_options,
    _check_labels,
)
