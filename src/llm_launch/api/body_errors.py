"""What a request body that failed its model still says, so one 422 names every problem.

Pydantic checks a body's types first and stops there: `{"min_workers": "two", ...}` used
to be answered with that one type error, hiding a bad name or `max_workers` below
`min_workers` elsewhere in the body. `parsed_part` keeps the fields that parsed (a field
with a type error, or an unknown one, is left out) so that the domain's rules run on them
too. A rule that combines fields would compare a left-out field's stand-in rather than
what the user meant, so the rules run twice, each time with different stand-ins, and
`ParsedPart.beside` keeps only the errors both runs found and that are not about a
left-out field (no "is required" for a field whose value merely had the wrong type).

The API's handler for request-validation errors (`api.errors`) and
`api.schemas.request_fields` (the CLI's `plan` and `render`) both use it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from llm_launch.domain.errors import FieldError
from llm_launch.domain.limits import MAX_WORKERS


@dataclass(frozen=True)
class ParsedPart:
    """The fields of a body that parsed, as two guesses that differ only in the stand-ins
    given to left-out fields the rules need; and the names of the left-out fields."""

    guesses: tuple[dict[str, Any], dict[str, Any]]
    left_out: frozenset[str]

    def beside(self, first: Iterable[FieldError], second: Iterable[FieldError]) -> list[FieldError]:
        """The rule errors of the first guess that the second has too and that are not
        about a left-out field: those hold whatever the left-out fields were meant to be."""
        both = set(second)
        return [e for e in first if e in both and not self._about_left_out(e)]

    def _about_left_out(self, error: FieldError) -> bool:
        return any(error.field == f or error.field.startswith(f"{f}.") for f in self.left_out)


def parsed_part(
    model: type[BaseModel], body: Any, pydantic_errors: Iterable[Any], *, creating: bool
) -> ParsedPart | None:
    """What `body` (which `model` refused with `pydantic_errors`) says besides its errors;
    None where nothing can be said (the body is not an object, or is wrong as a whole).

    `creating`: the body is a create request, whose rules need every required field; an
    update's left-out fields keep their stored values, except the counts, which get
    stand-ins like a create's (so that a rule comparing them with another field is
    seen to depend on them)."""
    if not isinstance(body, Mapping):
        return None
    left_out = set()
    for error in pydantic_errors:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        if not loc:
            return None  # the body as a whole is wrong: no field to keep
        left_out.add(str(loc[0]))
    kept = {k: v for k, v in body.items() if k not in left_out}
    try:
        fields = _lenient(model).model_validate(kept).model_dump(exclude_unset=True)
    except ValidationError:
        return None
    wanted = left_out if creating else left_out & _COUNTS
    first, second = (
        {**fields, **{k: v for k, v in stand_ins.items() if k in wanted}}
        for stand_ins in _stand_ins(fields)
    )
    return ParsedPart((first, second), frozenset(left_out))


@functools.cache
def _lenient(model: type[BaseModel]) -> type[BaseModel]:
    """`model` with its required fields optional: a field left out is not "required"."""
    optional: dict[str, Any] = {
        name: (_or_none(info.annotation), None)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    lenient: type[BaseModel] = create_model(f"Lenient{model.__name__}", __base__=model, **optional)
    return lenient


def _or_none(annotation: Any) -> Any:
    return annotation | None


# Counts other rules compare: an update gives them stand-ins too.
_COUNTS = frozenset({"min_workers", "max_workers", "gpus"})


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stand_ins(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two sets of values for the fields a create must have (`domain.spec_builder`) and
    for the framework. The first agrees with the fields that parsed as far as it can
    (workers no fewer than the minimum, GPUs as many as the shards, none for a CPU-only
    body); the second differs from it wherever a rule combines fields."""
    min_workers = _count(fields.get("min_workers"))
    shards = _count(fields.get("num_shards"))
    if fields.get("gpu_type") is not None:
        gpus = shards if shards is not None and shards >= 1 else 1
    else:
        gpus = shards if shards is not None and shards > 1 else 0
    common = {"name": "stand-in", "model_name": "stand-in", "cpus": 1, "memory": "1Gi",
              "per_worker": 1}  # fmt: skip
    agreeing = {**common, "gpus": gpus, "min_workers": 0, "max_workers": max(min_workers or 0, 0),
                "inference_framework": "vllm"}  # fmt: skip
    differing = {**common, "gpus": gpus + 1, "min_workers": MAX_WORKERS,
                 "max_workers": MAX_WORKERS, "inference_framework": "sglang"}  # fmt: skip
    return agreeing, differing
