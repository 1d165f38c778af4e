"""Building a spec from a request: `build_spec` for a create, `apply_update` for an update.

Both take the fields a request set, apply defaults, Launch's `metadata._llm` mirror and
Launch's engine fields (`domain.launch_fold`), and validate the result with every rule of
`domain.validation`, raising InvalidRequest with all the problems at once. Kept apart from
`domain.spec` (the type) so that the rules can import the type without a cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.launch_fold import (
    LaunchFold,
    fold_launch_fields,
    quantity_text,
    refuse_unsupported,
)
from llm_launch.domain.spec import LLM_METADATA_KEYS, EndpointSpec
from llm_launch.domain.validation import validate_spec

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
