"""EndpointSpec: the validated, persisted description of what a user asked to run.

`build_spec` turns the fields of a create request into a spec (applying defaults
and the legacy `metadata._llm` mirror); `apply_update` merges an update into an
existing spec. Both give Launch's engine fields their meaning (`domain.launch_fields`)
and raise InvalidRequest with every broken rule, checked by `domain.validation`. The
launch planner and every backend start from this type.

Null means absent, in a create and in an update alike: Launch's official client sends every
field it knows on every update, null when the caller left it unset, so a null never
clears a field (an update changes only what it sets to a value).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.launch_fold import (
    LaunchFold,
    fold_launch_fields,
    quantity_text,
    refuse_unsupported,
)

JsonValue = Any
EngineArgValue = str | int | float | bool | list[Any] | dict[str, Any]


@dataclass(frozen=True)
class EndpointSpec:
    """Everything a backend needs to deploy an endpoint, after defaults and validation."""

    name: str
    model_name: str
    inference_framework: str
    cpus: str | int | float
    memory: str
    gpus: int
    min_workers: int
    max_workers: int
    per_worker: int
    num_shards: int
    gpu_type: str | None = None
    storage: str | None = None
    nodes_per_worker: int = 1
    endpoint_type: str = "sync"
    source: str = "hugging_face"
    inference_framework_image_tag: str = "latest"
    quantize: str | None = None
    checkpoint_path: str | None = None
    chat_template_override: str | None = None
    engine_args: Mapping[str, EngineArgValue] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)
    post_inference_hooks: list[str] | None = None
    default_callback_url: str | None = None
    public_inference: bool = False
    prewarm: bool | None = None
    optimize_costs: bool | None = None
    high_priority: bool | None = None
    billing_tags: Mapping[str, JsonValue] | None = None
    # Launch's fields for its queue-based async endpoints and its startup telemetry: stored
    # and returned so Launch clients read back what they sent (llm-launch serves sync and
    # streaming endpoints only, so no queue exists for them to tune).
    task_expires_seconds: int | None = None
    queue_message_timeout_seconds: int | None = None
    enable_startup_metrics: bool | None = None
    # Bumped by an update with Launch's `force_bundle_recreation: true`; the launch plan
    # carries it, so every backend sees a new plan and recreates the groups.
    recreation: int = 0

    @property
    def is_multinode(self) -> bool:
        return self.nodes_per_worker > 1

    @property
    def served_model_name(self) -> str:
        """The name the engine serves the model under: the endpoint's own name, the one its
        callers send as OpenAI's `model`, so that answers carry the name the caller sent."""
        return self.name

    @property
    def gpus_per_group(self) -> int:
        """GPUs one replica group uses: GPUs per node times nodes."""
        return self.gpus * self.nodes_per_worker

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def llm_metadata(self) -> dict[str, Any]:
        """The `metadata._llm` mirror Launch clients read back."""
        return {key: getattr(self, key) for key in LLM_METADATA_KEYS}


# Keys of Launch's `metadata._llm` mirror of the LLM fields.
LLM_METADATA_KEYS = (
    "source",
    "quantize",
    "model_name",
    "num_shards",
    "checkpoint_path",
    "inference_framework",
    "chat_template_override",
    "inference_framework_image_tag",
)

# Fields fixed at creation: changing them means a different endpoint.
IMMUTABLE_FIELDS = frozenset(
    {"name", "inference_framework", "endpoint_type", "nodes_per_worker", "source"}
)

_REQUIRED = (
    "name",
    "model_name",
    "cpus",
    "memory",
    "gpus",
    "min_workers",
    "max_workers",
    "per_worker",
)


def build_spec(fields: Mapping[str, Any], catalog: HardwareCatalog) -> EndpointSpec:
    """Build and validate a spec from the fields a create request set explicitly."""
    values = {k: v for k, v in fields.items() if v is not None}
    errors = [FieldError(k, "is required") for k in _REQUIRED if k not in values]
    metadata = dict(values.get("metadata") or {})
    errors += _adopt_llm_metadata(values, metadata.pop("_llm", None))
    values["metadata"] = metadata
    values.setdefault("inference_framework", "vllm")
    errors += refuse_unsupported(values)
    quantity_text(values)
    fold = fold_launch_fields(values, values["inference_framework"])
    errors += fold.errors
    if "gpus" in values and "num_shards" not in values:
        values["num_shards"] = max(int(values["gpus"]), 1)
    if any(e.message == "is required" for e in errors):
        raise InvalidRequest(errors)
    spec = EndpointSpec.from_dict(values)
    errors += _checked(spec, fold, catalog)
    if errors:
        raise InvalidRequest(errors)
    return spec


def apply_update(
    current: EndpointSpec, changes: Mapping[str, Any], catalog: HardwareCatalog
) -> EndpointSpec:
    """Merge the fields an update request set to a value into `current`, and validate the
    result. `force_bundle_recreation: true` bumps `recreation`, so the groups are recreated
    even when nothing else changed."""
    changes = {k: v for k, v in changes.items() if v is not None}  # null means absent
    recreate = changes.pop("force_bundle_recreation", False) is True
    errors = refuse_unsupported(changes)
    quantity_text(changes)
    if "metadata" in changes:
        metadata = dict(changes["metadata"])
        errors += _adopt_llm_metadata(changes, metadata.pop("_llm", None))
        changes["metadata"] = metadata
    errors += [
        FieldError(
            key,
            f"cannot be changed after creation (it is {getattr(current, key)!r}); "
            "create a new endpoint instead",
        )
        for key in sorted(IMMUTABLE_FIELDS & changes.keys())
        if changes[key] != getattr(current, key)
    ]
    fold = fold_launch_fields(
        changes, current.inference_framework, stored_engine_args=current.engine_args
    )
    errors += fold.errors
    values = {k: v for k, v in changes.items() if k not in IMMUTABLE_FIELDS}
    if "gpus" in values and "num_shards" not in values and current.num_shards == current.gpus:
        values["num_shards"] = max(int(values["gpus"]), 1)  # shards follow GPUs per node
    if recreate:
        values["recreation"] = current.recreation + 1
    if errors:
        raise InvalidRequest(errors)
    updated = dataclasses.replace(current, **values)
    if errors := _checked(updated, fold, catalog):
        raise InvalidRequest(errors)
    return updated


def _checked(spec: EndpointSpec, fold: LaunchFold, catalog: HardwareCatalog) -> list[FieldError]:
    """Every rule `spec` breaks, errors about an engine flag named by the Launch field that
    set it, and the derived Launch fields checked once the spec's types are sound."""
    from llm_launch.domain.validation import validate_spec

    problems = validate_spec(spec, catalog)
    errors = fold.rename(problems.errors)
    if not problems.malformed:
        errors += fold.check_derived(spec)
    return errors


def _adopt_llm_metadata(values: dict[str, Any], llm: Any) -> list[FieldError]:
    """Apply Launch's `metadata._llm` mirror: it fills fields the request left out and
    must agree with those it set, so no value the user wrote is silently dropped."""
    if llm is None:
        return []
    if not isinstance(llm, Mapping):
        return [FieldError("metadata._llm", "must be an object")]
    errors = []
    for key, value in llm.items():
        if key not in LLM_METADATA_KEYS:
            allowed = ", ".join(LLM_METADATA_KEYS)
            errors.append(FieldError(f"metadata._llm.{key}", f"unknown key; allowed: {allowed}"))
        elif value is None:
            continue
        elif key not in values:
            values[key] = value
        elif values[key] != value:
            errors.append(
                FieldError(
                    f"metadata._llm.{key}",
                    f"is {value!r} but {key} is {values[key]!r}; remove one or make them agree",
                )
            )
    return errors
