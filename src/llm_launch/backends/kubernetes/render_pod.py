"""Pod templates from a launch plan's role: containers, env, resources, probes, volumes.

Called by `render` for the LeaderWorkerSet's leader and worker templates and for the
Deployment's template; reads the plan (`engines.plan`) and the hardware catalog entry of
the endpoint's GPU type. Pure: plain dicts in Kubernetes' JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.render_names import LABEL_ROLE, LWS_NAME_LABEL
from llm_launch.backends.kubernetes.render_security import container_security, pod_security
from llm_launch.domain.hardware import GpuType, Toleration
from llm_launch.domain.quantity import parse_quantity
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.weights_cache import cache_directory_name, is_downloaded
from llm_launch.engines.common import (
    ENGINE_CONTAINER,
    FORWARDER_CONTAINER,
    FORWARDER_TOKEN_ENV,
    PROGRESS_DIR,
    termination_grace_s,
)
from llm_launch.engines.plan import ContainerPlan, Probe, Role, RolePlan

Manifest = dict[str, Any]

SHM_VOLUME = "dshm"
WEIGHTS_VOLUME = "weights"
# The startup program's progress report (engines/common.py PROGRESS_FILE): written by the
# engine container, read by the forwarder beside it (read-only there; its root file
# system is read-only anyway). A few hundred bytes, so a small in-memory volume.
PROGRESS_VOLUME = "progress"
PROGRESS_VOLUME_SIZE = "1Mi"
# Downward API: every container learns its pod's IP (the startup program's own address,
# SGLANG_HOST_IP), name and namespace.
DOWNWARD_ENV = (
    ("POD_IP", "status.podIP"),
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
)
# The key of the forwarder token in the endpoint's Secret (render.token_secret).
TOKEN_KEY = "token"
# The LeaderWorkerSet controller injects LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and
# LWS_WORKER_INDEX, but not its own name: read it from the label it sets.
LWS_NAME_ENV = ("LWS_NAME", f"metadata.labels['{LWS_NAME_LABEL}']")
_PROBE_FIELDS = {
    "startup": "startupProbe",
    "readiness": "readinessProbe",
    "liveness": "livenessProbe",
}


@dataclass(frozen=True)
class PodContext:
    """What every pod of one endpoint shares."""

    spec: EndpointSpec
    config: KubernetesConfig
    gpu: GpuType | None  # the catalog entry of spec.gpu_type
    labels: dict[str, str]
    in_leaderworkerset: bool
    token_secret: str  # the Secret whose TOKEN_KEY the leader's forwarder requires


def pod_template(role: RolePlan, ctx: PodContext) -> Manifest:
    """The pod template of one role (leader or worker)."""
    metadata: Manifest = {"labels": {**ctx.labels, LABEL_ROLE: role.role.value}}
    if role.role is Role.LEADER and ctx.config.prometheus_annotations:
        metadata["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(ctx.config.plan_options.ports.forwarder),
            "prometheus.io/path": "/metrics",
        }
    return {"metadata": metadata, "spec": _pod_spec(role, ctx)}


def _pod_spec(role: RolePlan, ctx: PodContext) -> Manifest:
    config = ctx.config
    spec: Manifest = {
        "containers": [container(plan, ctx) for plan in role.containers],
        "volumes": _volumes(ctx),
        # No Service env vars: a Service named e.g. `vllm` would inject VLLM_PORT, which
        # vLLM reads as its own setting.
        "enableServiceLinks": False,
        # Engines and the forwarder never call the Kubernetes API.
        "automountServiceAccountToken": False,
        # The preStop hooks drain first (forwarder), then the engines stop; the countdown
        # covers both ("Pod Lifecycle", termination; "Container Lifecycle Hooks").
        "terminationGracePeriodSeconds": max(
            config.termination_grace_period_s, termination_grace_s(config.plan_options)
        ),
    }
    spec.update(pod_security(ctx))
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if priority_class := _priority_class(ctx):
        spec["priorityClassName"] = priority_class
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    if ctx.gpu is not None and ctx.gpu.node_selector:
        spec["nodeSelector"] = dict(ctx.gpu.node_selector)
    if ctx.gpu is not None and ctx.gpu.tolerations:
        spec["tolerations"] = [_toleration(t) for t in ctx.gpu.tolerations]
    if ctx.in_leaderworkerset and config.placement.scheduler_name:
        # Gang scheduling of a group's pods (config.Placement).
        spec["schedulerName"] = config.placement.scheduler_name
    return spec


def container(plan: ContainerPlan, ctx: PodContext) -> Manifest:
    """One container: the engine gets the endpoint's resources and volumes."""
    is_engine = plan.name == ENGINE_CONTAINER
    result: Manifest = {
        "name": plan.name,
        "image": image(ctx.spec, ctx.config),
        "imagePullPolicy": ctx.config.image_pull_policy,
        "command": list(plan.command),
        "env": _env(plan, ctx),
        "ports": [
            {"name": name, "containerPort": port, "protocol": "TCP"}
            for name, port in plan.ports.items()
        ],
        "resources": _engine_resources(ctx) if is_engine else _forwarder_resources(ctx.config),
    }
    result.update(container_security(plan, ctx))
    if is_engine:
        result["volumeMounts"] = [
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
            _weights_mount(ctx),
            {"name": PROGRESS_VOLUME, "mountPath": PROGRESS_DIR},
        ]
        # The kubelet keeps the tail of a failed engine's log as its termination message
        # (Pod API, "Customizing the termination message"): the status still has it when
        # LWS deletes the group before the backend could fetch the log.
        result["terminationMessagePolicy"] = "FallbackToLogsOnError"
    else:
        result["volumeMounts"] = [
            {"name": PROGRESS_VOLUME, "mountPath": PROGRESS_DIR, "readOnly": True}
        ]
    for probe in plan.probes:
        result[_PROBE_FIELDS[probe.kind]] = http_probe(probe)
    if plan.pre_stop:
        # exec, not httpGet: the forwarder's hook must send the token, which only that
        # container's environment holds (an httpGet hook carries no Secret), and exec
        # runs with the container's environment ("Container Lifecycle Hooks").
        result["lifecycle"] = {"preStop": {"exec": {"command": list(plan.pre_stop)}}}
    return result


def image(spec: EndpointSpec, config: KubernetesConfig) -> str:
    """Our engine image for the endpoint's framework, at the tag or digest the installation
    maps the endpoint's tag to (`KubernetesConfig.image_tags`; `check_supported` refused a
    tag it does not offer). A digest is written `repository@sha256:...` ("Images", Image
    names: https://kubernetes.io/docs/concepts/containers/images/)."""
    repository = config.image_repositories[spec.inference_framework]
    pulled = config.image_tags[spec.inference_framework][spec.inference_framework_image_tag]
    return f"{repository}@{pulled}" if pulled.startswith("sha256:") else f"{repository}:{pulled}"


def _priority_class(ctx: PodContext) -> str | None:
    """Launch's `high_priority` picks the configured class (None: no priorityClassName)."""
    classes = ctx.config.priority_classes
    return classes.high if ctx.spec.high_priority else classes.default


def http_probe(probe: Probe) -> Manifest:
    result: Manifest = {
        "httpGet": {"path": probe.path, "port": probe.port},
        "periodSeconds": probe.period_s,
        "timeoutSeconds": probe.timeout_s,
        "failureThreshold": probe.failure_threshold,
    }
    if probe.initial_delay_s:
        result["initialDelaySeconds"] = probe.initial_delay_s
    return result


def _env(plan: ContainerPlan, ctx: PodContext) -> list[Manifest]:
    downward = [*DOWNWARD_ENV, LWS_NAME_ENV] if ctx.in_leaderworkerset else list(DOWNWARD_ENV)
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": path}}} for n, path in downward]
    taken = {name for name, _ in downward} | {FORWARDER_TOKEN_ENV}
    env += [{"name": k, "value": v} for k, v in plan.env.items() if k not in taken]
    if plan.name == FORWARDER_CONTAINER:
        # Only the forwarder (on leaders only) holds the token, and by reference: the
        # value is in no pod spec, which many more people and tools can read than Secrets.
        ref = {"name": ctx.token_secret, "key": TOKEN_KEY}
        env.append({"name": FORWARDER_TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}})
    return env


def _engine_resources(ctx: PodContext) -> Manifest:
    spec = ctx.spec
    amounts = {"cpu": str(spec.cpus), "memory": spec.memory}
    if spec.storage is not None:
        amounts["ephemeral-storage"] = spec.storage
    if spec.gpus > 0:
        # The catalog's resource for this GPU type (a MIG slice's own, under the device
        # plugin's "mixed" strategy), else the installation's.
        default = ctx.config.gpu_resource
        resource = ctx.gpu.resource_name(default) if ctx.gpu is not None else default
        amounts[resource] = str(spec.gpus)
    if ctx.in_leaderworkerset and ctx.gpu is not None:
        # RDMA devices for NCCL between the group's nodes (the catalog's extra_resources).
        amounts.update(ctx.gpu.extra_resources)
    # Requests equal limits: GPUs require it, and the pod gets the Guaranteed QoS class.
    return {"requests": amounts, "limits": dict(amounts)}


def _forwarder_resources(config: KubernetesConfig) -> Manifest:
    amounts = {"cpu": config.forwarder_cpu, "memory": config.forwarder_memory}
    return {"requests": amounts, "limits": dict(amounts)}


def _volumes(ctx: PodContext) -> list[Manifest]:
    return [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": _shm_size(ctx)}},
        {"name": WEIGHTS_VOLUME, **_weights_source(ctx)},
        {
            "name": PROGRESS_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": PROGRESS_VOLUME_SIZE},
        },
    ]


def _cached(ctx: PodContext) -> bool:
    """True if this endpoint's downloads go to the installation's shared weights cache.

    Only downloaded checkpoints do: a local one is used in place and a model id is loaded
    by the engine, so a cache directory would stay empty (the weights directory then holds
    only the chat template file, which a pod's own emptyDir serves as well).
    """
    return ctx.config.weights_volume.kind != "emptyDir" and is_downloaded(ctx.spec.checkpoint_path)


def _weights_source(ctx: PodContext) -> Manifest:
    """The weights volume: a per-pod emptyDir, or this checkpoint's place in the cache.

    The cache holds one directory per checkpoint, named as the startup program names its
    copy (`domain/weights_cache.py`), so endpoints of one checkpoint share it and a pod
    sees no other checkpoint. In it the startup program keeps its usual layout (the copy,
    its lock file, partial copies), so locking and the atomic rename stay on one file system.
    """
    volume = ctx.config.weights_volume
    if not _cached(ctx):
        weights: Manifest = {}
        if ctx.spec.storage is not None:
            weights["sizeLimit"] = ctx.spec.storage
        return {"emptyDir": weights}
    assert ctx.spec.checkpoint_path is not None  # _cached checked it
    directory = cache_directory_name(ctx.spec.checkpoint_path)
    if volume.kind == "hostPath":
        # DirectoryOrCreate: the kubelet creates a missing directory with mode 0755, owned
        # as the kubelet is (root), which our engine images (USER 0) can write
        # (https://kubernetes.io/docs/concepts/storage/volumes/#hostpath).
        path = f"{volume.host_path}/{directory}"
        return {"hostPath": {"path": path, "type": "DirectoryOrCreate"}}
    return {"persistentVolumeClaim": {"claimName": volume.claim_name}}


def _weights_mount(ctx: PodContext) -> Manifest:
    """The engine's mount of the weights volume at the plan's weights directory.

    On a claim the checkpoint's directory is a `subPath`; the kubelet creates a missing
    subPath directory before it mounts it (kubernetes/kubernetes pkg/kubelet/kubelet_pods.go,
    makeMounts: "Create the sub path now ...").
    """
    mount: Manifest = {"name": WEIGHTS_VOLUME, "mountPath": ctx.config.plan_options.weights_dir}
    if _cached(ctx) and ctx.config.weights_volume.kind == "pvc":
        assert ctx.spec.checkpoint_path is not None
        mount["subPath"] = cache_directory_name(ctx.spec.checkpoint_path)
    return mount


def _shm_size(ctx: PodContext) -> str:
    """The configured /dev/shm size, or `shm_memory_fraction` of the endpoint's memory if
    that is smaller (in whole Mi, rounded down, written in Gi when it divides)."""
    configured = ctx.config.shm_size
    cap = parse_quantity(ctx.spec.memory) * Decimal(str(ctx.config.shm_memory_fraction))
    if cap >= parse_quantity(configured):
        return configured
    mebibytes = max(1, int(cap // 2**20))
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


def _toleration(t: Toleration) -> Manifest:
    result: Manifest = {"key": t.key, "operator": t.operator}
    if t.value is not None:
        result["value"] = t.value
    if t.effect is not None:
        result["effect"] = t.effect
    return result
