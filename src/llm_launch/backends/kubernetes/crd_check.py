"""The start-up check of the LeaderWorkerSet CRD: is it installed, does it serve `v1`, and
does its schema have every field llm-launch renders?

Caller: `backend.KubernetesBackend.start` (run by the API server's lifespan before the
reconciler starts). Next hop: `client.KubeClient.get_crd` (cluster-scoped `get` on
customresourcedefinitions/leaderworkersets.leaderworkerset.x-k8s.io, which the ClusterRole
in deploy/kubernetes/clusterrole.yaml grants by resourceName and nothing else).

Why at start: an API server prunes the fields an older CRD does not declare ("Field
pruning", CustomResourceDefinition docs), so a LeaderWorkerSet applied to LWS v0.3 would
silently lose `spec.networkConfig`. Apply already sends `fieldValidation=Strict`, which
turns that into a refused apply naming the field, but only once an endpoint is created; the
check says it when the server starts, for every endpoint at once.

How: render the LeaderWorkerSets of a representative set of multi-node specs with the
running configuration (so configured placement and per-GPU-type extras are included),
walk every field of each and look it up in the CRD's `v1` openAPIV3Schema (`properties`,
`additionalProperties`, `x-kubernetes-preserve-unknown-fields`, `items`); a string the
schema restricts with `enum` must be one of its values. `metadata` at the root is
ObjectMeta whatever the schema says (CRD docs, "Specifying a structural schema").

When the control plane may not read CRDs (403: the cluster admin did not grant the
ClusterRole), the check is skipped with a warning, not refused: it is an early warning,
and Strict field validation still refuses an unknown field by name at apply time, which
the endpoint's status then shows. Not installed (404), not serving v1, or missing a field
refuses to start, with the missing fields and the minimum LWS version in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.errors import (
    KubernetesError,
    KubernetesForbidden,
    ObjectNotFound,
)
from llm_launch.backends.kubernetes.render import render_spec
from llm_launch.backends.kubernetes.render_names import EndpointIdentity
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.spec import EndpointSpec

log = logging.getLogger("llm_launch.kubernetes")

Object = dict[str, Any]
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"
# The first release whose CRD has every field we render: spec.networkConfig.subdomainPolicy
# came last (kubernetes-sigs/lws#197, August 2024, released in v0.4.0); startupPolicy
# (#150) and rolloutStrategy.rollingUpdateConfiguration.maxSurge (#39) are older.
MINIMUM_LWS = "v0.4.0"
INSTALL = "https://lws.sigs.k8s.io/docs/installation/"


class LwsCrdUnsupported(KubernetesError):
    """The cluster's LeaderWorkerSet CRD cannot hold what llm-launch renders."""


async def check_lws_crd(client: KubeClient, config: KubernetesConfig) -> None:
    """Raise LwsCrdUnsupported unless the installed CRD serves v1 with every rendered
    field; log a warning and return when this control plane may not read CRDs, or when
    this configuration renders no LeaderWorkerSet at all (nothing then needs the CRD)."""
    objects = rendered_leader_worker_sets(config)
    if not objects:
        log.info("no multi-node endpoint renders with this configuration: LWS not checked")
        return
    try:
        crd = await client.get_crd(LWS_CRD)
    except KubernetesForbidden as exc:
        log.warning(
            "cannot read the LeaderWorkerSet CRD (%s); skipping its start-up check: an "
            "unknown field is still refused by name when an endpoint is applied "
            "(fieldValidation=Strict). Grant deploy/kubernetes/clusterrole.yaml to check it here",
            exc.message,
        )
        return
    except ObjectNotFound as exc:
        raise LwsCrdUnsupported(
            f"the LeaderWorkerSet CRD ({LWS_CRD}) is not installed in this cluster; install "
            f"LWS >= {MINIMUM_LWS} ({INSTALL}) before starting the Kubernetes backend"
        ) from exc
    problems = crd_problems(crd, objects)
    if problems:
        raise LwsCrdUnsupported(
            f"the LeaderWorkerSet CRD in this cluster {'; '.join(problems)}; "
            f"install LWS >= {MINIMUM_LWS} ({INSTALL})"
        )


def crd_problems(crd: Object, objects: list[Object]) -> list[str]:
    """What keeps `objects` from being stored as they are under the CRD's v1 schema."""
    versions = {v.get("name"): v for v in (crd.get("spec") or {}).get("versions") or []}
    served = versions.get("v1")
    if served is None or not served.get("served"):
        names = ", ".join(sorted(str(n) for n in versions)) or "none"
        return [f"does not serve version v1 (it serves: {names})"]
    schema = ((served.get("schema") or {}).get("openAPIV3Schema")) or {}
    found: dict[str, None] = {}  # ordered, without repeats
    for obj in objects:
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        for problem in _walk(body, schema, ""):
            found[problem] = None
    return list(found)


def _walk(value: Any, schema: Object, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in properties:
                yield from _walk(item, properties[key], where)
            elif isinstance(extra, dict):
                yield from _walk(item, extra, where)
            elif extra is not True:
                yield f"lacks {where}"
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, schema.get("items") or {}, f"{path}[]")
    elif isinstance(value, str) and "enum" in schema and value not in schema["enum"]:
        yield f"does not allow {path}={value!r} (allowed: {', '.join(map(str, schema['enum']))})"


def rendered_leader_worker_sets(config: KubernetesConfig) -> list[Object]:
    """The LeaderWorkerSets of the representative specs, rendered with `config` (none when
    it offers no multi-node engine image or GPU type)."""
    identity = EndpointIdentity(name="crd-check", endpoint_id="crd-check", owner="crd-check")
    rendered = []
    for spec in representative_specs(config):
        try:
            objects = render_spec(spec, config, identity)
        except InvalidRequest:  # a GPU type or engine this configuration does not serve
            continue
        rendered += [o for o in objects if o.get("kind") == "LeaderWorkerSet"]
    return rendered


def representative_specs(config: KubernetesConfig) -> list[EndpointSpec]:
    """The runbook's multi-node SGLang endpoint on every whole-GPU type of the catalog (each type
    brings its node selector, tolerations and RDMA resources), fixed and autoscaled, at
    high priority and not."""
    specs = []
    for gpu in config.catalog.gpu_types.values():
        if gpu.mig is not None:
            continue  # a MIG slice never runs multi-node (domain.hardware.MigSlice): no LWS
        base = {
            "name": "crd-check",
            "model_name": "deepseek-r1",
            "endpoint_type": "streaming",
            "inference_framework": "sglang",
            "inference_framework_image_tag": _image_tag(config, "sglang"),
            "cpus": 16,
            "memory": "64Gi",
            "storage": "100Gi",
            "gpus": gpu.max_gpus_per_node,
            "gpu_type": gpu.name,
            "num_shards": gpu.max_gpus_per_node,
            "nodes_per_worker": 2,
            "per_worker": 1,
            "labels": {"team": "crd-check"},
        }
        specs.append(EndpointSpec.from_dict(base | {"min_workers": 1, "max_workers": 1}))
        autoscaled = {"min_workers": 1, "max_workers": 3, "high_priority": True}
        specs.append(EndpointSpec.from_dict(base | autoscaled))
    return specs


def _image_tag(config: KubernetesConfig, framework: str) -> str:
    """A tag the configuration offers for `framework` ("" when none: the render refuses)."""
    return min(config.image_tags.get(framework) or [""])
