"""Request and response bodies of the Launch LLM-engine REST shape.

Requests declare every field Launch's server defines, with Launch's types (null allowed),
and forbid unknown fields (a misspelt field is an error, not silently dropped). Launch's
engine fields (vLLM's and SGLang's) are generated from the domain's tables
(`domain.launch_fields`), which also give each its meaning. GET and list answers are in
`api/responses.py`.
The rules themselves live in the domain (`domain.validation`, bounds in `domain.limits`),
which reports every problem of a request at once. Here the integer bounds are published
in /openapi.json, and free-form JSON is refused when too deep before pydantic walks it.
`request_fields` checks a body outside the API (`llm-launch plan`, `render`) with the same
models and the same error conversion as the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic import create_model as _create_model
from pydantic_core import PydanticCustomError

from llm_launch.api.body_errors import parsed_part
from llm_launch.api.errors import field_errors
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.inputs import describe, nesting_problem
from llm_launch.domain.launch_fields import ENGINE_FIELD_TYPES, ValueType, field_description
from llm_launch.domain.limits import MAX_JSON_DEPTH
from llm_launch.domain.validation import INTEGER_BOUNDS

StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]  # a JSON integer is a number too; true is not
EngineArg = str | StrictInt | float | bool | list[Any] | dict[str, Any]
Cpus = StrictInt | float | str
# Launch's StorageSpecificationType: a Kubernetes quantity, or a number of bytes.
Quantity = StrictInt | float | str


def _bounded(name: str, description: str) -> Any:
    """An optional integer whose domain bounds /openapi.json shows. The domain enforces
    them, next to every other rule, so that one response names all of a request's
    problems (a pydantic `ge`/`le` would answer alone, before the domain's rules run)."""
    low, high = INTEGER_BOUNDS[name]
    return Field(
        default=None, description=description, json_schema_extra={"minimum": low, "maximum": high}
    )


def _refuse_deep(field: str, value: Any) -> Any:
    if (found := nesting_problem(value, MAX_JSON_DEPTH)) is not None:
        raise PydanticCustomError("json_too_deep", "{reason}", {"reason": describe(field, found)})
    return value


def _shallow_json(field: str) -> BeforeValidator:
    """Refuse a free-form object nested deeper than MAX_JSON_DEPTH, walking it without
    recursion, before pydantic (which recurses) validates or serializes it."""
    return BeforeValidator(lambda value: _refuse_deep(field, value))


def _shallow_engine_args(value: Any) -> Any:
    if isinstance(value, dict):  # each value is one flag's; the depth bound is per value
        for key, item in value.items():
            _refuse_deep(f"engine_args.{key}", item)
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallbackBasicAuth(_Request):
    kind: Literal["basic"]
    username: str
    password: str


class CallbackMTLSAuth(_Request):
    kind: Literal["mtls"]
    cert: str
    key: str


CallbackAuth = Annotated[CallbackBasicAuth | CallbackMTLSAuth, Field(discriminator="kind")]

_ENGINE_TYPES: dict[ValueType, Any] = {
    ValueType.INT: StrictInt,
    ValueType.FLOAT: StrictFloat,
    ValueType.BOOL: bool,
    ValueType.STR: str,
    ValueType.STR_LIST: list[str],
    ValueType.INT_LIST: list[StrictInt],
    ValueType.OBJECT: dict[str, Any],
}


def _engine_field(name: str, value_type: ValueType) -> tuple[Any, Any]:
    annotation = _ENGINE_TYPES[value_type]
    if value_type is ValueType.OBJECT:
        annotation = Annotated[annotation, _shallow_json(name)]
    return annotation | None, Field(default=None, description=field_description(name))


if TYPE_CHECKING:

    class _LaunchEngineFields(_Request):
        """Launch's vLLM and SGLang engine fields (generated at run time)."""

else:
    _LaunchEngineFields = _create_model(
        "LaunchEngineFields",
        __base__=_Request,
        __doc__="Launch's vLLM and SGLang engine fields; `domain.launch_fields` gives each "
        "its meaning.",
        **{name: _engine_field(name, t) for name, t in sorted(ENGINE_FIELD_TYPES.items())},
    )


class _LLMFields(_LaunchEngineFields):
    """Fields create and update share, all optional here; rules live in the domain."""

    model_name: str | None = None
    source: str | None = None
    inference_framework_image_tag: str | None = None
    num_shards: StrictInt | None = _bounded("num_shards", "GPUs per node the engine shards over")
    quantize: str | None = None
    checkpoint_path: str | None = None
    chat_template_override: str | None = None
    engine_args: Annotated[dict[str, EngineArg] | None, BeforeValidator(_shallow_engine_args)] = (
        Field(
            default=None,
            description="Extra engine flags, e.g. {'context-length': 8192}; keys are flag names "
            "without dashes or with underscores, values are rendered as separate argv items.",
        )
    )
    cpus: Cpus | None = None
    memory: Quantity | None = None
    storage: Quantity | None = None
    gpus: StrictInt | None = _bounded("gpus", "GPUs per node")
    gpu_type: str | None = None
    min_workers: StrictInt | None = _bounded("min_workers", "replica groups kept running")
    max_workers: StrictInt | None = _bounded("max_workers", "replica groups at most")
    per_worker: StrictInt | None = _bounded("per_worker", "concurrent requests per group")
    labels: dict[str, str] | None = None
    metadata: Annotated[dict[str, Any] | None, _shallow_json("metadata")] = None
    post_inference_hooks: list[str] | None = Field(
        default=None, description="Not supported by llm-launch: only null or [] is accepted."
    )
    default_callback_url: str | None = Field(
        default=None, description="Not supported by llm-launch: only null is accepted."
    )
    default_callback_auth: CallbackAuth | None = Field(
        default=None, description="Not supported by llm-launch: only null is accepted."
    )
    public_inference: bool | None = None
    prewarm: bool | None = None
    optimize_costs: bool | None = None
    high_priority: bool | None = None
    billing_tags: Annotated[dict[str, Any] | None, _shallow_json("billing_tags")] = None
    task_expires_seconds: StrictInt | None = _bounded(
        "task_expires_seconds", "Launch's queue setting: stored and returned"
    )
    queue_message_timeout_seconds: StrictInt | None = _bounded(
        "queue_message_timeout_seconds", "Launch's queue setting: stored and returned"
    )
    enable_startup_metrics: bool | None = None
    routing_policy: Literal["least_in_flight", "cache_aware"] | None = Field(
        default=None,
        description="llm-launch's own: how requests are spread over the ready groups. "
        "'least_in_flight' (default): the group with the fewest requests in flight, ties "
        "drawn at random; 'cache_aware': prompts sharing a prefix go to the group that "
        "served it, unless the load is unbalanced (as sglang-router's cache_aware policy).",
    )


class CreateEndpointRequest(_LLMFields):
    name: str
    model_name: str
    endpoint_type: str | None = None
    inference_framework: str | None = None
    nodes_per_worker: StrictInt | None = _bounded("nodes_per_worker", "nodes per group")


class UpdateEndpointRequest(_LLMFields):
    # Accepted so that a client may send them unchanged; changing them is a clear error.
    endpoint_type: str | None = None
    inference_framework: str | None = None
    nodes_per_worker: StrictInt | None = _bounded("nodes_per_worker", "nodes per group")
    force_bundle_recreation: bool | None = Field(
        default=None,
        description="true: recreate the endpoint's groups even if nothing else changed.",
    )


def request_fields(
    model: type[_Request],
    body: Mapping[str, Any],
    rules: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """The fields `body` sets, checked by `model` as the API checks a request body (the same
    model, the same conversion of its errors); InvalidRequest names each bad field.

    `rules` (a create's domain rules, raising InvalidRequest) run on the fields that parsed
    when others did not, so that the error names every problem, as the API's does."""
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        if rules is not None and (part := parsed_part(model, body, exc.errors(), creating=True)):
            first, second = part.guesses
            errors += part.beside(_refusals(rules, first), _refusals(rules, second))
        raise InvalidRequest(errors) from exc
    return parsed.model_dump(exclude_unset=True)


def _refusals(
    rules: Callable[[dict[str, Any]], object], fields: dict[str, Any]
) -> list[FieldError]:
    try:
        rules(fields)
    except InvalidRequest as refused:
        return list(refused.errors)
    return []


class TaskResponse(BaseModel):
    endpoint_creation_task_id: str


class DeleteResponse(BaseModel):
    deleted: bool


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []
