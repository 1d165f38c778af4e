"""Render an endpoint as Kubernetes objects: plain dicts, no I/O, no clock, no client.

Callers: the Kubernetes backend's apply step (with a stored Endpoint) and `llm-launch
render` (with a spec and an owner, for review or GitOps). Next hop: `engines.planner.
plan_launch` builds the launch plan inside; `render_pod` turns its roles into pod
templates; the caller applies, prints or diffs the result.

Public API (pinned by `__all__`; the backend's apply/watch modules rely on it):

- `render_endpoint(endpoint, config) -> list[dict]`: the objects of a stored endpoint, in
  apply order: the Secret holding its forwarder token, the workload, its Service, then
  (when autoscaled) its HorizontalPodAutoscaler. Raises `InvalidRequest` if
  `check_supported` finds problems.
- `render_spec(spec, config, identity)`: the same from a spec and an `EndpointIdentity`,
  without the Secret (there is no stored token: output meant for review or GitOps never
  holds one); its pods still refer to it by name, `secret_name(owner, spec)`.
- `check_supported(spec, config) -> list[FieldError]`: what this backend cannot run
  (min_workers=0 below max_workers: scale from zero; a GPU type or framework this
  installation does not know). Empty when supported; call it before accepting a spec.
- `to_yaml(objects) -> str`: multi-document YAML; `token_secret_notice(spec, config,
  identity)`: comment lines for `render_spec` output naming the Secret its pods need.
- From `render_names`: `object_name(owner, spec)` (`llm-<name>-<owner suffix>`:
  LeaderWorkerSet, Deployment, HPA), `service_name(owner, spec)` (`<object name>-leader`
  multi-node, the object name single-node), `service_url(owner, spec, namespace)`,
  `identity_labels`, `pod_selector`, the label keys `LABEL_ENDPOINT`, `LABEL_ENDPOINT_ID`,
  `LABEL_OWNER`, `LABEL_ROLE`, `LABEL_MANAGED_BY`, `MANAGED_SELECTOR` (lists everything
  llm-launch manages) and `ANNOTATION_GENERATION`.

Objects:
- a Secret (type Opaque, key `token`) with the endpoint's forwarder token; only the
  leader's forwarder container reads it, as LLM_LAUNCH_FORWARDER_TOKEN via secretKeyRef;
- multi-node: a LeaderWorkerSet (`size` = nodes_per_worker; leader = engine rank 0 plus
  the forwarder; workers = the engine) and a Service selecting leaders only;
- single-node: a Deployment (the leader's pod) and a Service selecting its pods;
- when min_workers < max_workers: an autoscaling/v2 HPA on the forwarder's in-flight
  requests (a Pods metric, target average = per_worker). The workload then carries no
  `replicas`, so re-applying never fights the HPA (Kubernetes' own advice).
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.render_names import (
    ANNOTATION_CONTROL_PLANE,
    ANNOTATION_GENERATION,
    LABEL_ENDPOINT,
    LABEL_ENDPOINT_ID,
    LABEL_MANAGED_BY,
    LABEL_OWNER,
    LABEL_ROLE,
    LWS_NAME_LABEL,
    LWS_WORKER_INDEX_LABEL,
    MANAGED_SELECTOR,
    EndpointIdentity,
    derived_endpoint_id,
    identity_labels,
    network_policy_name,
    object_labels,
    object_name,
    pod_selector,
    secret_name,
    service_name,
    service_url,
)
from llm_launch.backends.kubernetes.render_network import (
    NETWORK_POLICY_API_VERSION,
    network_policy_spec,
)
from llm_launch.backends.kubernetes.render_pod import (
    TOKEN_KEY,
    Manifest,
    PodContext,
    pod_template,
)
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.plan import IpFamily, LaunchPlan
from llm_launch.engines.planner import plan_launch

__all__ = [
    "ANNOTATION_CONTROL_PLANE",
    "ANNOTATION_GENERATION",
    "LABEL_ENDPOINT",
    "LABEL_ENDPOINT_ID",
    "LABEL_MANAGED_BY",
    "LABEL_OWNER",
    "LABEL_ROLE",
    "LWS_API_VERSION",
    "MANAGED_SELECTOR",
    "EndpointIdentity",
    "check_supported",
    "derived_endpoint_id",
    "identity_labels",
    "is_autoscaled",
    "object_name",
    "pod_selector",
    "render_endpoint",
    "render_spec",
    "secret_name",
    "service_name",
    "service_url",
    "to_yaml",
    "token_secret_notice",
]

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
# The LeaderWorkerSet annotation for exclusive placement (LWS "Labels, annotations and
# environment variables": on the LeaderWorkerSet; the webhook copies it onto the pods).
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"
# A Deployment may take this long beyond the startup budget (scheduling, image pulls)
# before Kubernetes calls its rollout stuck.
_PROGRESS_MARGIN_S = 900


def render_endpoint(endpoint: Endpoint, config: KubernetesConfig) -> list[Manifest]:
    """The Kubernetes objects of a stored endpoint (see the module docstring), its forwarder
    token's Secret first."""
    if not endpoint.forwarder_token:
        # The store gives every endpoint one; without it the forwarder would not start.
        raise ValueError(f"endpoint {endpoint.id} has no forwarder token")
    identity = EndpointIdentity(
        name=endpoint.name,
        endpoint_id=endpoint.id,
        owner=endpoint.owner,
        generation=endpoint.generation,
    )
    return _render(endpoint.spec, config, identity, endpoint.forwarder_token)


def render_spec(
    spec: EndpointSpec, config: KubernetesConfig, identity: EndpointIdentity
) -> list[Manifest]:
    """The Kubernetes objects of `spec`, labelled for `identity`. No Secret: the pods
    refer to `secret_name(identity.owner, spec)`, which must exist (key `token`)."""
    return _render(spec, config, identity, None)


def _render(
    spec: EndpointSpec, config: KubernetesConfig, identity: EndpointIdentity, token: str | None
) -> list[Manifest]:
    errors = check_supported(spec, config)
    if errors:
        raise InvalidRequest(errors)
    plan = plan_launch(spec, config.plan_options)
    labels = object_labels(identity, spec.labels)
    ctx = PodContext(
        spec=spec,
        config=config,
        gpu=config.catalog.get(spec.gpu_type) if spec.gpu_type else None,
        labels=labels,
        in_leaderworkerset=plan.worker is not None,
        token_secret=secret_name(identity.owner, spec),
    )
    build = _leaderworkerset if plan.worker is not None else _deployment
    workload = build(plan, ctx, identity)
    objects = [workload, _service(plan, ctx, identity)]
    if config.network_policy.enabled:
        # Right after the workload, before the Service routes anything to it: in the same
        # apply pass, long before its pods can be scheduled and started.
        objects.insert(1, _network_policy(plan, ctx, identity))
    if is_autoscaled(spec):
        objects.append(_autoscaler(workload, ctx, identity))
    if token is not None:
        # First: the leader's forwarder cannot start until its Secret exists.
        objects.insert(0, _token_secret(token, ctx, identity))
    return objects


def is_autoscaled(spec: EndpointSpec) -> bool:
    return spec.min_workers < spec.max_workers


def check_supported(spec: EndpointSpec, config: KubernetesConfig) -> list[FieldError]:
    """What the Kubernetes backend cannot run for `spec`, each with its field."""
    errors = []
    if spec.min_workers == 0 and spec.max_workers > 0:
        errors.append(
            FieldError(
                "min_workers",
                "min_workers=0 needs scale-to-zero, which the Kubernetes backend does not "
                "support (a HorizontalPodAutoscaler cannot scale up from zero replicas); "
                "use min_workers >= 1",
            )
        )
    if spec.gpu_type is not None and config.catalog.get(spec.gpu_type) is None:
        errors.append(
            FieldError(
                "gpu_type",
                f"{spec.gpu_type!r} is not in this installation's hardware catalog; "
                f"one of {', '.join(config.catalog.names())}",
            )
        )
    if spec.inference_framework not in config.image_repositories:
        errors.append(
            FieldError(
                "inference_framework",
                f"no engine image is configured for {spec.inference_framework!r}",
            )
        )
    elif spec.inference_framework_image_tag not in config.image_tags.get(
        spec.inference_framework, {}
    ):
        offered = config.image_tags.get(spec.inference_framework, {})
        errors.append(
            FieldError(
                "inference_framework_image_tag",
                f"{spec.inference_framework_image_tag!r} is not an image tag this installation "
                f"offers for {spec.inference_framework}; one of {', '.join(sorted(offered))}",
            )
        )
    return errors


def token_secret_notice(
    spec: EndpointSpec, config: KubernetesConfig, identity: EndpointIdentity
) -> str:
    """YAML comment lines for `render_spec` output: the Secret its pods need, and how to
    make one. Output meant for review or GitOps holds no token, so it says so instead."""
    name = secret_name(identity.owner, spec)
    return (
        f"# The leader's forwarder reads its token from Secret {name} (key `{TOKEN_KEY}`)\n"
        f"# in namespace {config.namespace}; it must exist first, e.g.\n"
        f"#   kubectl -n {config.namespace} create secret generic {name} \\\n"
        f'#     --from-literal={TOKEN_KEY}="$(openssl rand -hex 32)"\n'
        "# and whatever routes to the Service must send it as `Authorization: Bearer <token>`.\n"
    )


def to_yaml(objects: list[Manifest]) -> str:
    """Multi-document YAML, keys in rendering order."""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=1000)


def _metadata(name: str, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    metadata: Manifest = {
        "name": name,
        "namespace": ctx.config.namespace,
        "labels": dict(ctx.labels),
    }
    if identity.generation is not None:
        metadata["annotations"] = {
            ANNOTATION_GENERATION: str(identity.generation),
            ANNOTATION_CONTROL_PLANE: ctx.config.control_plane_id,
        }
    return metadata


def _replicas(spec: EndpointSpec) -> dict[str, int]:
    """`replicas`, unless an HPA owns it."""
    return {} if is_autoscaled(spec) else {"replicas": spec.min_workers}


def _rollout(config: KubernetesConfig) -> dict[str, Any]:
    return {"maxUnavailable": config.max_unavailable, "maxSurge": config.max_surge}


def _token_secret(token: str, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    """The endpoint's forwarder token, under `data` (base64): server-side apply then owns
    exactly the field it sets (with `stringData` the API server would write `data`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(ctx.token_secret, ctx, identity),
        "type": "Opaque",
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def _leaderworkerset(plan: LaunchPlan, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    assert plan.worker is not None
    config = ctx.config
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": _placement(
            _metadata(object_name(identity.owner, ctx.spec), ctx, identity), ctx
        ),
        "spec": {
            **_replicas(ctx.spec),
            "startupPolicy": config.startup_policy,
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": _rollout(config),
            },
            # Shared: one headless Service named after the LeaderWorkerSet, the
            # subdomain of LWS_LEADER_ADDRESS.
            "networkConfig": {"subdomainPolicy": "Shared"},
            "leaderWorkerTemplate": {
                "size": plan.nodes,
                "restartPolicy": config.restart_policy,
                "leaderTemplate": pod_template(plan.leader, ctx),
                "workerTemplate": pod_template(plan.worker, ctx),
            },
        },
    }


def _network_policy(plan: LaunchPlan, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    """Who may reach the endpoint's pods (render_network)."""
    name = network_policy_name(identity.owner, ctx.spec)
    return {
        "apiVersion": NETWORK_POLICY_API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, ctx, identity),
        "spec": network_policy_spec(
            pod_selector(identity), plan.ports.forwarder, ctx.config.network_policy
        ),
    }


def _placement(metadata: Manifest, ctx: PodContext) -> Manifest:
    """A LeaderWorkerSet's metadata with its exclusive-topology annotation, if configured:
    one group per topology domain, a group within one (config.Placement)."""
    key = ctx.config.placement.exclusive_topology_key
    if key is not None:
        metadata.setdefault("annotations", {})[LWS_EXCLUSIVE_TOPOLOGY] = key
    return metadata


def _deployment(plan: LaunchPlan, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    config = ctx.config
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(object_name(identity.owner, ctx.spec), ctx, identity),
        "spec": {
            **_replicas(ctx.spec),
            "selector": {"matchLabels": pod_selector(identity)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": _rollout(config)},
            "progressDeadlineSeconds": config.plan_options.startup_budget_s + _PROGRESS_MARGIN_S,
            "template": pod_template(plan.leader, ctx),
        },
    }


def _service(plan: LaunchPlan, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    if plan.worker is not None:
        # Leaders only: workers serve a dummy /health and no inference.
        selector = {
            LWS_NAME_LABEL: object_name(identity.owner, ctx.spec),
            LWS_WORKER_INDEX_LABEL: "0",
            **pod_selector(identity),
        }
    else:
        selector = pod_selector(identity)
    spec: Manifest = {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [
            {
                "name": "http",
                "port": ctx.config.service_port,
                "targetPort": plan.ports.forwarder,
                "protocol": "TCP",
            }
        ],
    }
    family = ctx.config.plan_options.ip_family
    if family is not IpFamily.AUTO:
        spec["ipFamilyPolicy"] = "SingleStack"
        spec["ipFamilies"] = ["IPv6" if family is IpFamily.IPV6 else "IPv4"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service_name(identity.owner, ctx.spec), ctx, identity),
        "spec": spec,
    }


def _autoscaler(workload: Manifest, ctx: PodContext, identity: EndpointIdentity) -> Manifest:
    """Scale groups (or pods) on the forwarders' in-flight requests, per_worker each.

    For a LeaderWorkerSet the HPA goes through its scale subresource, whose selector
    picks leader pods only: one forwarder, hence one metric sample, per group.
    """
    spec = ctx.spec
    metric = {"name": ctx.config.autoscaling_metric}
    target = {"type": "AverageValue", "averageValue": str(spec.per_worker)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(object_name(identity.owner, ctx.spec), ctx, identity),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": workload["apiVersion"],
                "kind": workload["kind"],
                "name": workload["metadata"]["name"],
            },
            "minReplicas": spec.min_workers,
            "maxReplicas": spec.max_workers,
            "metrics": [{"type": "Pods", "pods": {"metric": metric, "target": target}}],
            "behavior": {"scaleDown": _scale_down()},
        },
    }


# HPA "Configurable scaling behavior" (kubernetes.io/docs/tasks/run-application/
# horizontal-pod-autoscale/#configurable-scaling-behavior): scale down on the highest
# recommendation of the last 5 minutes (the documented default window, written out so
# it is stated, not implied), and by at most one group per 5 minutes: a group takes up
# to the startup budget (30 min) to come back, so a dip in traffic must not cost several.
# Each group removed drains first (the pods' preStop hooks). Scale-up keeps the defaults.
def _scale_down() -> Manifest:
    return {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
    }
