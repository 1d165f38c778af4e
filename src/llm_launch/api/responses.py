"""GET and list answers of `/v1/llm/model-endpoints`, in Launch's full shape.

Built by the endpoints router from a stored Endpoint and what its backend reports of it
(`backends.base.ServingPoint`). Every field of Launch's `GetLLMModelEndpointV1Response`
and of its `spec` (`GetModelEndpointV1Response`, with `deployment_state` and
`resource_state`) is present, so the official Launch client parses them; a field for
something llm-launch does not have (a queue, an AWS role) is null. Our additions ride
along as extra keys, which Launch clients ignore: `spec.status_reason`,
`spec.engine_args`, the stored Launch common fields, and `spec.groups` (each group's
processes or pods, phase, restarts and last cause, from the backend's `group_details`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from llm_launch.backends.base import ServingPoint
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.groups import GroupCause, GroupDetail
from llm_launch.domain.spec import EndpointSpec

# Spec fields that do not change what a group runs: how many groups, and bookkeeping.
# Every other field, one added later included, is part of the bundle.
_NOT_IN_BUNDLE = frozenset(
    {
        "min_workers",
        "max_workers",
        "per_worker",
        "labels",
        "metadata",
        "billing_tags",
        "public_inference",
        "prewarm",
        "optimize_costs",
        "high_priority",
        "post_inference_hooks",
        "default_callback_url",
        "task_expires_seconds",
        "queue_message_timeout_seconds",
        "enable_startup_metrics",
        "routing_policy",
    }
)


def _field_defaults() -> dict[str, Any]:
    defaults = {}
    for f in dataclasses.fields(EndpointSpec):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


_DEFAULTS = _field_defaults()
_UNSET = object()


def bundle_name(spec: EndpointSpec) -> str:
    """`<name>-<framework>-<image tag>-<8 hex>`: the hex is a digest of what the endpoint's
    groups run (model, checkpoint, image, engine flags, hardware shape, and the count of
    forced recreations), so an update that changes it gets a new name, as it gets a new
    bundle on Launch, and scaling does not. Fields at their default are left out of the
    digest, so that a field added to the spec later does not rename stored endpoints'."""
    shaped = {
        key: value
        for key, value in spec.to_dict().items()
        if key not in _NOT_IN_BUNDLE and value != _DEFAULTS.get(key, _UNSET)
    }
    text = json.dumps(shaped, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{spec.name}-{spec.inference_framework}-{spec.inference_framework_image_tag}-{digest}"


class DeploymentState(BaseModel):
    min_workers: int
    max_workers: int
    per_worker: int
    concurrent_requests_per_worker: int = Field(
        description="requests each group's forwarder takes at once (its --max-concurrency); "
        "more are answered 429 at once"
    )
    available_workers: int
    unavailable_workers: int


class ResourceState(BaseModel):
    """Per node: a group (worker) of `nodes_per_worker` nodes has that many times these."""

    cpus: int | float | str
    gpus: int
    memory: str
    gpu_type: str | None
    storage: str | None
    nodes_per_worker: int
    optimize_costs: bool | None


class CauseView(BaseModel):
    """Why a group was last recreated, or its forwarder restarted."""

    kind: str = Field(description="exited, hung, could-not-start or forwarder-exited")
    process: str | None = Field(description='"rank-N" or "forwarder"; null: not one process')
    exit_code: int | None
    signal: str | None = Field(description='the signal that ended it, e.g. "SIGKILL"')
    saw: str = Field(description='what the supervisor saw, e.g. "killed by SIGKILL"')
    at: datetime
    excerpt: str | None = Field(
        description="the last lines of the failed process's log (never part of a status)"
    )

    @classmethod
    def of(cls, cause: GroupCause) -> CauseView:
        return cls(
            kind=cause.kind.value, process=cause.process, exit_code=cause.exit_code,
            signal=cause.signal, saw=cause.saw, at=cause.at, excerpt=cause.excerpt,
        )  # fmt: skip


class ProcessView(BaseModel):
    name: str = Field(description='"rank-N" (an engine rank) or "forwarder"')
    pid: int | None = Field(description="locally; null on Kubernetes or while not running")
    alive: bool
    progress: str | None = Field(
        description="while the group starts: the rank's startup report, e.g. "
        '"downloading weights 41% (290/700 GB, 1.1 GB/s)"'
    )


class GroupView(BaseModel):
    index: int
    generation: int | None = Field(description="the endpoint generation the group runs")
    ready: bool = Field(description="its leader passes the generation check: it takes traffic")
    phase: str = Field(description='one line: "ready", "starting: rank 0 downloading ...", ...')
    restarts: int = Field(description="recreations of the whole group")
    forwarder_restarts: int = Field(description="restarts of its forwarder alone")
    last_cause: CauseView | None
    processes: list[ProcessView]

    @classmethod
    def of(cls, group: GroupDetail) -> GroupView:
        return cls(
            index=group.index, generation=group.generation, ready=group.ready,
            phase=group.phase, restarts=group.restarts,
            forwarder_restarts=group.forwarder_restarts,
            last_cause=CauseView.of(group.last_cause) if group.last_cause else None,
            processes=[
                ProcessView(name=p.name, pid=p.pid, alive=p.alive, progress=p.progress)
                for p in group.processes
            ],
        )  # fmt: skip


class EndpointSpecView(BaseModel):
    id: str
    name: str
    endpoint_type: str
    destination: str = Field(
        description="where the endpoint's traffic goes: on Kubernetes the URL of its Service "
        "(a multi-node endpoint's leader Service) inside the cluster; on the local backend "
        "the URLs of its running groups' forwarders, joined with ',' ('' while none runs, "
        "and always '' on a server without a backend)"
    )
    deployment_name: str | None = Field(
        description="the Kubernetes LeaderWorkerSet (multi-node) or Deployment running the "
        "endpoint; null on the local backend, whose groups are plain processes"
    )
    metadata: dict[str, Any]
    bundle_name: str = Field(
        description="names what the groups run: <name>-<framework>-<image tag>-<8 hex digest "
        "of the model, checkpoint, image, engine flags and hardware>; an update changing any "
        "of them renames it, scaling does not"
    )
    status: str
    status_reason: str | None
    post_inference_hooks: list[str] | None
    default_callback_url: str | None
    default_callback_auth: dict[str, Any] | None = None  # llm-launch sends no callbacks
    labels: dict[str, str]
    aws_role: str | None = None
    results_s3_bucket: str | None = None
    created_by: str
    created_at: datetime
    last_updated_at: datetime
    deployment_state: DeploymentState
    resource_state: ResourceState
    num_queued_items: int | None = Field(
        default=None, description="always null: llm-launch endpoints serve without a queue"
    )
    public_inference: bool
    git_sha: str | None = None
    # Ours, beyond Launch's shape.
    engine_args: dict[str, Any]
    billing_tags: dict[str, Any] | None
    prewarm: bool | None
    high_priority: bool | None
    optimize_costs: bool | None
    task_expires_seconds: int | None
    queue_message_timeout_seconds: int | None
    enable_startup_metrics: bool | None
    routing_policy: str = Field(
        description="how requests are spread over the groups: least_in_flight or cache_aware"
    )
    groups: list[GroupView] = Field(
        default_factory=list,
        description="each running group (a rollout's replacement and groups still draining "
        "included): its processes (locally) or containers (Kubernetes), phase, restarts and "
        "last cause; the history that status_reason, which says only what is now, leaves out",
    )


def _spec_view(
    endpoint: Endpoint, serving: ServingPoint, groups: Sequence[GroupDetail]
) -> EndpointSpecView:
    s = endpoint.spec
    return EndpointSpecView(
        id=endpoint.id,
        name=s.name,
        endpoint_type=s.endpoint_type,
        destination=serving.destination,
        deployment_name=serving.deployment_name,
        metadata={**s.metadata, "_llm": s.llm_metadata()},
        bundle_name=bundle_name(s),
        status=endpoint.status.value,
        status_reason=endpoint.status_reason,
        post_inference_hooks=s.post_inference_hooks,
        default_callback_url=s.default_callback_url,
        labels=dict(s.labels),
        created_by=endpoint.owner,
        created_at=endpoint.created_at,
        last_updated_at=endpoint.last_updated_at,
        deployment_state=DeploymentState(
            min_workers=s.min_workers,
            max_workers=s.max_workers,
            per_worker=s.per_worker,
            concurrent_requests_per_worker=serving.concurrent_requests_per_worker,
            available_workers=endpoint.available_workers,
            unavailable_workers=endpoint.unavailable_workers,
        ),
        resource_state=ResourceState(
            cpus=s.cpus,
            gpus=s.gpus,
            memory=s.memory,
            gpu_type=s.gpu_type,
            storage=s.storage,
            nodes_per_worker=s.nodes_per_worker,
            optimize_costs=s.optimize_costs,
        ),
        public_inference=s.public_inference,
        engine_args=dict(s.engine_args),
        billing_tags=dict(s.billing_tags) if s.billing_tags is not None else None,
        prewarm=s.prewarm,
        high_priority=s.high_priority,
        optimize_costs=s.optimize_costs,
        task_expires_seconds=s.task_expires_seconds,
        queue_message_timeout_seconds=s.queue_message_timeout_seconds,
        enable_startup_metrics=s.enable_startup_metrics,
        routing_policy=s.routing_policy,
        groups=[GroupView.of(g) for g in groups],
    )


class EndpointResponse(BaseModel):
    id: str
    name: str
    model_name: str
    source: str
    status: str
    inference_framework: str
    inference_framework_image_tag: str
    num_shards: int
    quantize: str | None
    checkpoint_path: str | None
    chat_template_override: str | None
    spec: EndpointSpecView

    @classmethod
    def from_endpoint(
        cls, endpoint: Endpoint, serving: ServingPoint, groups: Sequence[GroupDetail] = ()
    ) -> EndpointResponse:
        s = endpoint.spec
        return cls(
            id=endpoint.id,
            name=s.name,
            model_name=s.model_name,
            source=s.source,
            status=endpoint.status.value,
            inference_framework=s.inference_framework,
            inference_framework_image_tag=s.inference_framework_image_tag,
            num_shards=s.num_shards,
            quantize=s.quantize,
            checkpoint_path=s.checkpoint_path,
            chat_template_override=s.chat_template_override,
            spec=_spec_view(endpoint, serving, groups),
        )


class ListEndpointsResponse(BaseModel):
    model_endpoints: list[EndpointResponse]
