"""EndpointSpec: the validated, persisted description of what a user asked to run.

`domain.spec_builder` makes one from a request (`build_spec` for a create, `apply_update`
for an update), giving Launch's engine fields their meaning (`domain.launch_fields`) and
checking every rule of `domain.validation`. The launch planner and every backend start
from this type.

Null means absent, in a create and in an update alike: Launch's official client sends every
field it knows on every update, null when the caller left it unset, so a null never
clears a field (an update changes only what it sets to a value).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    # llm-launch's own: how the inference route picks among the ready groups
    # (`domain.routing.RoutingPolicy`: "least_in_flight" or "cache_aware").
    routing_policy: str = "least_in_flight"
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
