"""The rules an EndpointSpec must satisfy, each reported with its field path.

Every rule appends to one list, so a user sees all problems of a request at once
(like the LeaderWorkerSet webhook), and nothing is persisted unless the list is empty.
The first rules check each field's shape (types, the bounds of `domain.limits`, text fit
for argv, env and paths, bounded free-form JSON); where a type is wrong the rules that
combine fields are skipped, since they would compare values of the wrong kind.
Called by `domain.spec` (build_spec, apply_update), for every spec however it was made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from llm_launch.domain import limits
from llm_launch.domain.engine_flags import engine_arg_key_problem
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.frameworks import (
    KNOWN_UNSUPPORTED_FRAMEWORKS,
    MULTINODE_FRAMEWORKS,
    SUPPORTED_QUANTIZATIONS,
    InferenceFramework,
)
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.inputs import clip, describe, json_problem, text_problem
from llm_launch.domain.names import (
    dns1123_label_problem,
    label_key_problem,
    label_value_problem,
    max_name_length,
)
from llm_launch.domain.quantity import parse_quantity
from llm_launch.domain.routing import RoutingPolicy
from llm_launch.domain.spec import EndpointSpec

SUPPORTED_ENDPOINT_TYPES = ("sync", "streaming")
CHECKPOINT_SCHEMES = ("s3://", "gs://", "hf://", "file://")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}")
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

# Integer fields: (lowest, highest), both inclusive. The API publishes the same bounds.
INTEGER_BOUNDS: dict[str, tuple[int, int]] = {
    "min_workers": (0, limits.MAX_WORKERS),
    "max_workers": (0, limits.MAX_WORKERS),
    "per_worker": (1, limits.MAX_PER_WORKER),
    "nodes_per_worker": (1, limits.MAX_NODES_PER_WORKER),
    "gpus": (0, limits.MAX_GPUS_PER_NODE),
    "num_shards": (1, limits.MAX_NUM_SHARDS),
    "task_expires_seconds": (1, limits.MAX_TASK_EXPIRES_SECONDS),
    "queue_message_timeout_seconds": (1, limits.MAX_QUEUE_MESSAGE_TIMEOUT_SECONDS),
}
# Integer fields that may be absent (None).
OPTIONAL_INTEGERS = frozenset({"task_expires_seconds", "queue_message_timeout_seconds"})
# Text fields: (most bytes, whether tab/newline/CR are allowed); None means optional.
TEXT_FIELDS: dict[str, tuple[int, bool]] = {
    "model_name": (limits.MAX_SHORT_TEXT_CHARS, False),
    "inference_framework": (limits.MAX_SHORT_TEXT_CHARS, False),
    "endpoint_type": (limits.MAX_SHORT_TEXT_CHARS, False),
    "source": (limits.MAX_SHORT_TEXT_CHARS, False),
    "inference_framework_image_tag": (limits.MAX_SHORT_TEXT_CHARS, False),
    "gpu_type": (limits.MAX_SHORT_TEXT_CHARS, False),
    "quantize": (limits.MAX_SHORT_TEXT_CHARS, False),
    "memory": (limits.MAX_SHORT_TEXT_CHARS, False),
    "storage": (limits.MAX_SHORT_TEXT_CHARS, False),
    "checkpoint_path": (limits.MAX_PATH_BYTES, False),
    "chat_template_override": (limits.MAX_CHAT_TEMPLATE_BYTES, True),
    "default_callback_url": (limits.MAX_URL_BYTES, False),
    "routing_policy": (limits.MAX_SHORT_TEXT_CHARS, False),
}
# Quantities: (field, most in base units).
QUANTITY_BOUNDS: dict[str, Decimal] = {
    "cpus": limits.MAX_CPUS,
    "memory": limits.MAX_MEMORY_BYTES,
    "storage": limits.MAX_STORAGE_BYTES,
}


@dataclass
class Problems:
    """Collected rule violations."""

    errors: list[FieldError] = field(default_factory=list)
    # Set when a field has the wrong type: rules combining fields are then skipped.
    malformed: bool = False

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidRequest(self.errors)


def validate_spec(spec: EndpointSpec, catalog: HardwareCatalog) -> Problems:
    """Check every rule; return the problems found (empty when the spec is valid)."""
    problems = Problems()
    for rule in _SHAPE_RULES:
        rule(spec, catalog, problems)
    if problems.malformed:
        return problems
    for rule in _RULES:
        rule(spec, catalog, problems)
    return problems


def _check_integers(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    for name, (low, high) in INTEGER_BOUNDS.items():
        value = getattr(spec, name)
        if value is None and name in OPTIONAL_INTEGERS:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            p.add(name, f"must be an integer (got {type(value).__name__})")
            p.malformed = True
        elif value < low:
            p.add(name, f"must be >= {low} (got {value})")
        elif value > high:
            p.add(name, f"must be at most {high} (got {clip(value)})")


def _check_texts(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    for name, (max_bytes, layout) in TEXT_FIELDS.items():
        value = getattr(spec, name)
        if value is not None and (
            problem := text_problem(value, max_bytes=max_bytes, allow_layout=layout)
        ):
            p.add(name, problem)
            p.malformed = p.malformed or not isinstance(value, str)
    hooks = spec.post_inference_hooks
    if hooks is not None:
        if not isinstance(hooks, list):
            p.add("post_inference_hooks", "must be a list of strings")
        elif len(hooks) > limits.MAX_HOOKS:
            p.add("post_inference_hooks", f"must have at most {limits.MAX_HOOKS} entries")
        else:
            for index, hook in enumerate(hooks):
                if problem := text_problem(hook, max_bytes=limits.MAX_HOOK_CHARS):
                    p.add(f"post_inference_hooks.{index}", problem)
    if not isinstance(spec.cpus, str | int | float) or isinstance(spec.cpus, bool):
        p.add("cpus", "must be a number or a Kubernetes quantity")
        p.malformed = True


def _check_free_form(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    for name in ("metadata", "billing_tags", "labels", "engine_args"):
        value = getattr(spec, name)
        if value is not None and not isinstance(value, Mapping):
            p.add(name, "must be an object")
            p.malformed = True
    if p.malformed:
        return
    for name in ("metadata", "billing_tags"):
        value = getattr(spec, name)
        if value is not None and (found := json_problem(dict(value))):
            p.add(name, describe(name, found))
    if len(spec.labels) > limits.MAX_LABELS:
        p.add("labels", f"must have at most {limits.MAX_LABELS} entries")


def _check_framework(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    supported = ", ".join(f.value for f in InferenceFramework)
    if spec.inference_framework in KNOWN_UNSUPPORTED_FRAMEWORKS:
        p.add(
            "inference_framework",
            f"{clip(spec.inference_framework)} is not supported by llm-launch; "
            f"use one of {supported}",
        )
    elif spec.inference_framework not in set(InferenceFramework):
        p.add(
            "inference_framework",
            f"unknown framework {clip(spec.inference_framework)}; use one of {supported}",
        )
    if spec.endpoint_type not in SUPPORTED_ENDPOINT_TYPES:
        p.add(
            "endpoint_type",
            f"{clip(spec.endpoint_type)} is not supported; use 'sync' or 'streaming' "
            "(both serve sync and streaming requests)",
        )
    if not _MODEL_NAME.fullmatch(spec.model_name or ""):
        p.add(
            "model_name",
            "must be 1-256 characters of letters, digits and . _ / : @ + -, "
            "starting with a letter or digit",
        )
    if spec.source != "hugging_face":
        p.add("source", f"{clip(spec.source)} is not supported; the only source is 'hugging_face'")
    if not _IMAGE_TAG.fullmatch(spec.inference_framework_image_tag or ""):
        p.add("inference_framework_image_tag", "must be a valid container image tag")


def _check_routing(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    if spec.routing_policy not in set(RoutingPolicy):
        p.add(
            "routing_policy",
            f"unknown routing policy {clip(spec.routing_policy)}; use one of "
            f"{', '.join(policy.value for policy in RoutingPolicy)}",
        )


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
    if spec.max_workers < spec.min_workers:
        p.add(
            "max_workers",
            f"must be >= min_workers ({clip(spec.max_workers)} < {clip(spec.min_workers)})",
        )


def _check_resources(spec: EndpointSpec, catalog: HardwareCatalog, p: Problems) -> None:
    _check_quantity(p, "cpus", str(spec.cpus))
    _check_quantity(p, "memory", spec.memory)
    if spec.storage is not None:
        _check_quantity(p, "storage", spec.storage)
    if spec.gpus < 0:
        return  # said by _check_integers
    if spec.gpus > 0 and spec.gpu_type is None:
        p.add("gpu_type", f"is required when gpus > 0; one of {', '.join(catalog.names())}")
    elif spec.gpus == 0 and spec.gpu_type is not None:
        p.add("gpus", f"must be >= 1 when gpu_type is set (gpu_type is {clip(spec.gpu_type)})")
    if spec.gpu_type is not None:
        gpu = catalog.get(spec.gpu_type)
        if gpu is None:
            p.add(
                "gpu_type",
                f"unknown GPU type {clip(spec.gpu_type)}; one of {', '.join(catalog.names())}",
            )
        elif gpu.mig is not None:  # one slice, one node: its own reasons, not a node's size
            p.errors += catalog.mig_problems(gpu, spec.gpus, spec.nodes_per_worker)
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


def _check_quantity(p: Problems, path: str, value: str) -> None:
    """A positive quantity no larger than its QUANTITY_BOUNDS entry."""
    try:
        amount = parse_quantity(value)
    except ValueError as exc:
        p.add(path, str(exc))
        return
    if amount <= Decimal(0):
        p.add(path, f"must be > 0 (got {value!r})")
    elif amount > QUANTITY_BOUNDS[path]:
        unit = "" if path == "cpus" else " bytes"
        p.add(path, f"must be at most {QUANTITY_BOUNDS[path]}{unit} (got {value!r})")


def _check_multinode(spec: EndpointSpec, _: HardwareCatalog, p: Problems) -> None:
    if not spec.is_multinode:
        return
    if spec.inference_framework not in MULTINODE_FRAMEWORKS:
        p.add("nodes_per_worker", "multinode endpoints are only supported for vLLM and SGLang")
    if spec.endpoint_type != "streaming":
        p.add(
            "endpoint_type",
            f"must be 'streaming' for multinode endpoints (got {clip(spec.endpoint_type)})",
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
                f"{clip(spec.quantize)} is not supported by {framework.value}; "
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
    _check_engine_args(spec, framework, p)


def _check_engine_args(
    spec: EndpointSpec, framework: InferenceFramework | None, p: Problems
) -> None:
    """Each key a flag the engine may be given; each value bounded JSON of clean text."""
    if len(spec.engine_args) > limits.MAX_ENGINE_ARGS:
        p.add("engine_args", f"must have at most {limits.MAX_ENGINE_ARGS} entries")
        return
    values_clean = True
    for key, value in spec.engine_args.items():
        path = f"engine_args.{key}"
        if problem := engine_arg_key_problem(key, framework):
            p.add(path, problem)
        found = json_problem(value, max_bytes=limits.MAX_ENGINE_ARG_VALUE_BYTES, no_controls=True)
        if found:
            p.add(path, describe(path, found))
            values_clean = False
        elif isinstance(value, list) and not value:
            p.add(path, "an empty list cannot be passed; leave the flag out")
        elif isinstance(value, list) and any(str(v).startswith("-") for v in value):
            p.add(path, "list items may not start with '-' (they would be read as flags)")
    if values_clean:  # each value is bounded, so serializing them all is safe
        size = len(json.dumps(dict(spec.engine_args), ensure_ascii=False).encode())
        if size > limits.MAX_ENGINE_ARGS_BYTES:
            p.add(
                "engine_args",
                f"must be at most {limits.MAX_ENGINE_ARGS_BYTES} bytes serialized as JSON "
                f"(got {size})",
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
_SHAPE_RULES: tuple[_Rule, ...] = (_check_integers, _check_texts, _check_free_form)
_RULES: tuple[_Rule, ...] = (
    _check_framework,
    _check_routing,
    _check_name,
    _check_workers,
    _check_resources,
    _check_multinode,
    _check_engine_options,
    _check_labels,
)
