"""KubernetesConfig: the installation's settings that shape rendered Kubernetes objects.

Built once by whoever starts the Kubernetes backend (or by `llm-launch render`) and
passed to `render.render_endpoint`; nothing here reads files or the clock except the
default hardware catalog, which is loaded when a config is constructed, never while
rendering. A config that cannot produce working objects is refused at construction
(`KubernetesConfigError`), so an operator's mistake surfaces at start, not per endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.checkpoints import normalize_path
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.names import dns1123_label_problem, label_value_problem
from llm_launch.domain.quantity import is_quantity
from llm_launch.engines.options import PlanOptions

__all__ = [
    "DEFAULT_IMAGE_REPOSITORIES",
    "DEFAULT_IMAGE_TAGS",
    "KubernetesConfig",
    "KubernetesConfigError",
    "NetworkPolicySettings",
    "Placement",
    "PriorityClasses",
    "WeightsVolume",
]

# Our engine images (deploy/images/), which carry the engine plus the llm-launch runtime
# (`llm-launch-startup`, `llm-launch-forwarder`); the tag is the endpoint's
# `inference_framework_image_tag`.
DEFAULT_IMAGE_REPOSITORIES: Mapping[str, str] = {
    "sglang": "ghcr.io/llm-launch/sglang",
    "vllm": "ghcr.io/llm-launch/vllm",
}
# The image tags each framework offers: the endpoint's `inference_framework_image_tag` ->
# the tag (or `sha256:` digest) pulled from its repository. An endpoint asking for a tag
# not listed is refused (422). The defaults are the tags deploy/images/README.md builds
# (the pinned upstream engine version); an installation lists its own, and may map the
# names its clients send (Launch's `multinode-latest-2`, say) onto them. A digest pins
# the image's content; a tag can be moved ("Images", Image names:
# https://kubernetes.io/docs/concepts/containers/images/).
DEFAULT_IMAGE_TAGS: Mapping[str, Mapping[str, str]] = {
    "sglang": {"v0.5.21": "v0.5.21"},
    "vllm": {"v0.31.0": "v0.31.0"},
}

RESTART_POLICIES = ("RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# OCI distribution spec: a tag is [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}; a digest is
# ALGORITHM:HEX, sha256 being the one registries use.
_IMAGE_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")
# PersistentVolumeClaim names are DNS-1123 subdomains ("Object Names and IDs",
# https://kubernetes.io/docs/concepts/overview/working-with-objects/names/).
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
WEIGHTS_VOLUME_FORMS = "emptyDir, hostPath:/ABSOLUTE/DIR or pvc:CLAIM"


class KubernetesConfigError(ValueError):
    """The Kubernetes settings cannot produce working objects; the message names the field."""


@dataclass(frozen=True)
class WeightsVolume:
    """Where the pods of this installation keep the checkpoints the startup program downloads.

    - `emptyDir` (default): one copy per pod, gone with it; every group recreate downloads
      the checkpoint again.
    - `hostPath:<dir>`: a node-local cache; each checkpoint gets `<dir>/<name>` on the node
      (`domain/weights_cache.py`), shared by that node's pods and kept across recreates.
    - `pvc:<claim>`: an existing ReadWriteMany PersistentVolumeClaim in the namespace; each
      checkpoint gets the `<name>` subdirectory of the volume, shared by every node.

    hostPath is for clusters that allow it: the Pod Security Standards' Baseline level
    forbids `spec.volumes[*].hostPath` (https://kubernetes.io/docs/concepts/security/
    pod-security-standards/#baseline; kubernetes/pod-security-admission
    policy/check_hostPath.go), so a namespace enforcing baseline or restricted refuses the
    pods. Nothing removes old checkpoints from either cache, and a cached checkpoint is
    reused as long as it is complete: a path is taken to name fixed contents. A pod's local
    ephemeral storage, which the kubelet limits and evicts on, is its emptyDir volumes, logs
    and writable layers (https://kubernetes.io/docs/concepts/storage/ephemeral-storage/):
    neither cache counts there, so the endpoint's `storage` no longer bounds the copy.
    """

    kind: str = "emptyDir"  # "emptyDir", "hostPath" or "pvc"
    host_path: str | None = None  # hostPath: the cache's root directory on every node
    claim_name: str | None = None  # pvc: the claim's name

    def __post_init__(self) -> None:
        if problem := _weights_volume_problem(self):
            raise KubernetesConfigError(f"weights volume: {problem}")

    @classmethod
    def parse(cls, text: str) -> WeightsVolume:
        """`emptyDir`, `hostPath:/var/cache/llm-launch` or `pvc:CLAIM` (kinds in any case)."""
        kind, sep, value = text.strip().partition(":")
        folded = kind.lower()
        if folded == "emptydir" and not sep:
            return cls()
        if folded == "hostpath" and sep:
            # Stored normalized (`//` and `.` removed); a path that cannot be is kept as
            # given, for the check to name.
            normalized = normalize_path(value)
            return cls(
                "hostPath", host_path=value if isinstance(normalized, str) else str(normalized)
            )
        if folded == "pvc" and sep:
            return cls("pvc", claim_name=value)
        raise KubernetesConfigError(f"weights volume {text!r}: use {WEIGHTS_VOLUME_FORMS}")

    def __str__(self) -> str:
        if self.kind == "hostPath":
            return f"hostPath:{self.host_path}"
        if self.kind == "pvc":
            return f"pvc:{self.claim_name}"
        return self.kind


@dataclass(frozen=True)
class PriorityClasses:
    """The `priorityClassName` of an endpoint's pods: Launch's `high_priority: true` gets
    `high`, every other endpoint `default`; None leaves the field out, so the cluster's
    globalDefault class (or priority 0) applies. The classes are cluster objects the
    platform team creates ("Pod Priority and Preemption",
    https://kubernetes.io/docs/concepts/configuration/pod-priority-preemption/); a pod
    naming one that does not exist is refused by the Priority admission plugin."""

    high: str | None = None
    default: str | None = None


@dataclass(frozen=True)
class Placement:
    """Placement of multi-node groups (LeaderWorkerSets); single-node pods are unaffected.

    - `exclusive_topology_key`: a node label key (`cloud.google.com/gke-nodepool`,
      `topology.kubernetes.io/zone`, a rack or network-block label). Written as the
      LeaderWorkerSet annotation `leaderworkerset.sigs.k8s.io/exclusive-topology`, it makes
      the LWS webhook give every pod of a group a pod affinity to its own group and an
      anti-affinity to other groups on that key: one group per domain, all of a group's
      nodes in one domain, so tensor parallelism crosses only that domain's fabric (LWS
      "Exclusive placement" and "Labels, annotations and environment variables",
      https://lws.sigs.k8s.io/docs/; kubernetes-sigs/lws pkg/webhooks/pod_webhook.go,
      SetExclusiveAffinities). None: no annotation.
    - `scheduler_name`: the `schedulerName` of every pod of a group, for gang scheduling
      (a group's pods are bound all together or not at all, so a half-placed group never
      holds GPUs hostage). With Volcano, LWS (>= v0.7, installed with
      `gangSchedulingManagement.schedulerProvider: volcano`) creates one PodGroup per group
      and puts the pod-group annotation on the pods itself, so pods need nothing but
      `schedulerName: volcano` (LWS "Gang scheduling", kubernetes-sigs/lws
      pkg/schedulerprovider). None: the default scheduler.
    """

    exclusive_topology_key: str | None = None
    scheduler_name: str | None = None


# The labels of the control plane's pods in deploy/kubernetes/deployment.yaml.
DEFAULT_CONTROL_PLANE_POD_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "llm-launch",
    "app.kubernetes.io/component": "api-server",
}
# The labels of the `llm-launch gateway` pods in deploy/kubernetes/gateway-deployment.yaml.
DEFAULT_GATEWAY_POD_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "llm-launch",
    "app.kubernetes.io/component": "gateway",
}


@dataclass(frozen=True)
class NetworkPolicySettings:
    """Who may reach an endpoint's pods (one NetworkPolicy per endpoint, `render`).

    - `enabled`: render the policy (it takes effect only where the cluster's network
      plugin enforces NetworkPolicies; "Network Policies", https://kubernetes.io/docs/
      concepts/services-networking/network-policies/).
    - `control_plane_pod_labels`: the labels of the control plane's API pods, which may
      call a forwarder (default: those of deploy/kubernetes/deployment.yaml).
    - `gateway_pod_labels`: the labels of the `llm-launch gateway` pods, which may call a
      forwarder too (default: those of deploy/kubernetes/gateway-deployment.yaml); None:
      no gateway pods. A setting of its own, not a change to the one above, so that a
      configuration file written before the gateway existed (which sets the API pods'
      labels) keeps admitting the API pods and admits the gateway's by default.
    - `control_plane_namespace`: the namespace of the API and gateway pods; None: the
      endpoints' own.
    - `metrics_namespace`: a namespace whose pods (Prometheus) may also scrape the
      forwarder's /metrics, which the autoscaler's metric comes from; None: none.
    Egress is left open: engines download weights from wherever the checkpoint lives.
    """

    enabled: bool = True
    control_plane_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CONTROL_PLANE_POD_LABELS)
    )
    gateway_pod_labels: Mapping[str, str] | None = field(
        default_factory=lambda: dict(DEFAULT_GATEWAY_POD_LABELS)
    )
    control_plane_namespace: str | None = None
    metrics_namespace: str | None = None


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str = "default"
    # Tells this installation's objects from another's in a shared namespace.
    control_plane_id: str = "default"
    image_repositories: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_IMAGE_REPOSITORIES)
    )
    # Framework -> endpoint tag -> image tag or digest (DEFAULT_IMAGE_TAGS).
    image_tags: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_IMAGE_TAGS.items()}
    )
    # One policy for leaders and workers alike, so every pod of a group runs one build.
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    # LeaderWorkerSet group semantics. `LeaderReady` is refused: our leader waits for its
    # workers before starting the engine, so workers created only after the leader is
    # Ready would never come.
    restart_policy: str = "RecreateGroupOnPodRestart"
    startup_policy: str = "LeaderCreated"
    # Rollouts, for LeaderWorkerSets (groups) and Deployments (pods) alike. The defaults
    # replace one group at a time and need no spare GPUs.
    max_unavailable: int | str = 1
    max_surge: int | str = 0
    plan_options: PlanOptions = field(default_factory=PlanOptions)
    catalog: HardwareCatalog = field(default_factory=load_hardware_catalog)
    # The resource a GPU is requested as, unless the catalog's entry names its own (MIG).
    gpu_resource: str = "nvidia.com/gpu"
    # Memory-backed /dev/shm for NCCL and the engines' shared memory; capped at the
    # endpoint's memory, which it counts against.
    shm_size: str = "64Gi"
    # ... and at most this fraction of the endpoint's memory: a memory-backed emptyDir is
    # usable up to the smaller of its sizeLimit and the pod's memory limits, and what it
    # holds counts as the containers' memory (https://kubernetes.io/docs/concepts/storage/
    # volumes/#emptydir), so a full /dev/shm must leave the engine room. 0.5 is the
    # Linux tmpfs default (half the RAM).
    shm_memory_fraction: float = 0.5
    priority_classes: PriorityClasses = field(default_factory=PriorityClasses)
    # The forwarder's own resources, in addition to the endpoint's (which go to the engine).
    forwarder_cpu: str = "1"
    forwarder_memory: str = "1Gi"
    service_port: int = 80
    # Autoscaling: a Pods metric per leader (one forwarder per group); target = per_worker.
    autoscaling_metric: str = "llm_launch_requests_in_flight"
    # Annotate leader pods so a Prometheus with the common `prometheus.io/*` scrape
    # configuration scrapes the forwarder's /metrics.
    prometheus_annotations: bool = True
    termination_grace_period_s: int = 60
    # Where downloaded checkpoints live (see WeightsVolume); emptyDir keeps today's behaviour.
    weights_volume: WeightsVolume = field(default_factory=WeightsVolume)
    # Where multi-node groups run and who schedules them (see Placement).
    placement: Placement = field(default_factory=Placement)
    # Each endpoint's NetworkPolicy (see NetworkPolicySettings).
    network_policy: NetworkPolicySettings = field(default_factory=NetworkPolicySettings)
    # The forwarder container's user and group: not root, as Pod Security "restricted"
    # asks; 65534 is `nobody` in the engine images' base distributions.
    forwarder_user_id: int = 65534

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise KubernetesConfigError("; ".join(problems))


def _problems(c: KubernetesConfig) -> list[str]:
    problems = []
    if dns1123_label_problem(c.namespace):
        problems.append(f"namespace {c.namespace!r}: {dns1123_label_problem(c.namespace)}")
    if c.restart_policy not in RESTART_POLICIES:
        problems.append(f"restart_policy must be one of {', '.join(RESTART_POLICIES)}")
    if c.startup_policy != "LeaderCreated":
        problems.append(
            "startup_policy must be LeaderCreated: the leader waits for its workers before "
            "it starts the engine, so with LeaderReady the group would never start"
        )
    if c.image_pull_policy not in PULL_POLICIES:
        problems.append(f"image_pull_policy must be one of {', '.join(PULL_POLICIES)}")
    problems += _rollout_problems(c.max_unavailable, c.max_surge)
    for name in ("shm_size", "forwarder_cpu", "forwarder_memory"):
        if not is_quantity(getattr(c, name)):
            problems.append(f"{name} must be a Kubernetes quantity (got {getattr(c, name)!r})")
    if not 0 < c.shm_memory_fraction <= 1:
        problems.append(f"shm_memory_fraction must be in (0, 1] (got {c.shm_memory_fraction})")
    problems += _image_problems(c)
    classes = c.priority_classes
    for kind, class_name in (("high", classes.high), ("default", classes.default)):
        if class_name is not None and (
            len(class_name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(class_name)
        ):
            problems.append(f"priority_classes.{kind} {class_name!r} is not a PriorityClass name")
    if not 1 <= c.service_port <= 65535:
        problems.append(f"service_port must be 1-65535 (got {c.service_port})")
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", c.autoscaling_metric):
        problems.append(f"autoscaling_metric {c.autoscaling_metric!r} is not a metric name")
    if c.termination_grace_period_s < 0:
        problems.append("termination_grace_period_s must be >= 0")
    problems += _placement_problems(c.placement)
    problems += _network_policy_problems(c.network_policy)
    if not 1 <= c.forwarder_user_id <= 2**31 - 1:
        problems.append(
            f"forwarder_user_id must be a non-root user id, 1 or more (got {c.forwarder_user_id})"
        )
    return problems


def _placement_problems(p: Placement) -> list[str]:
    problems = []
    key = p.exclusive_topology_key
    if key is not None and (problem := label_key_problem(key)):
        problems.append(f"placement.exclusive_topology_key {key!r}: {problem}")
    name = p.scheduler_name
    if name is not None and (len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name)):
        problems.append(f"placement.scheduler_name {name!r} is not a scheduler name")
    return problems


def _network_policy_problems(n: NetworkPolicySettings) -> list[str]:
    problems = []
    selectors = {"control_plane_pod_labels": n.control_plane_pod_labels}
    if n.gateway_pod_labels is not None:
        selectors["gateway_pod_labels"] = n.gateway_pod_labels
    for name, labels in selectors.items():
        if not labels:
            # An empty selector would let every pod of the namespace call the forwarders.
            problems.append(f"network_policy.{name} must name at least one label")
        for key, value in labels.items():
            if problem := label_key_problem(key) or label_value_problem(value):
                problems.append(f"network_policy.{name} {key}={value}: {problem}")
    for name in ("control_plane_namespace", "metrics_namespace"):
        namespace = getattr(n, name)
        if namespace is not None and (problem := dns1123_label_problem(namespace)):
            problems.append(f"network_policy.{name} {namespace!r}: {problem}")
    return problems


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a label key (optional DNS-1123 subdomain prefix and `/`, then a
    name of at most 63 characters; "Labels and Selectors", Syntax and character set)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "its prefix is not a DNS-1123 subdomain"
    if not name or label_value_problem(name):
        return "its name must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at each end"
    return None


def _image_problems(c: KubernetesConfig) -> list[str]:
    problems = []
    for framework, tags in c.image_tags.items():
        if not tags:
            problems.append(f"image_tags.{framework}: offers no tag")
        for tag, pulled in tags.items():
            if not _IMAGE_TAG.fullmatch(tag):
                problems.append(f"image_tags.{framework}: {tag!r} is not an image tag")
            if not (_IMAGE_TAG.fullmatch(pulled) or _DIGEST.fullmatch(pulled)):
                problems.append(
                    f"image_tags.{framework}.{tag}: {pulled!r} is neither an image tag nor "
                    "a digest (sha256: and 64 hex digits)"
                )
    for framework in c.image_repositories:
        if framework not in c.image_tags:
            problems.append(f"image_tags: no tags for {framework!r}, which has a repository")
    return problems


def _rollout_problems(max_unavailable: int | str, max_surge: int | str) -> list[str]:
    problems = []
    for name, value in (("max_unavailable", max_unavailable), ("max_surge", max_surge)):
        if isinstance(value, int) and value < 0:
            problems.append(f"{name} must be >= 0 (got {value})")
        elif isinstance(value, str) and not _PERCENT.match(value):
            problems.append(f"{name} must be a number or a percentage such as '25%'")
    if str(max_unavailable).rstrip("%") == "0" and str(max_surge).rstrip("%") == "0":
        problems.append("max_unavailable and max_surge cannot both be 0: no rollout could start")
    return problems


def _weights_volume_problem(v: WeightsVolume) -> str | None:
    if v.kind == "emptyDir":
        if v.host_path is not None or v.claim_name is not None:
            return "emptyDir takes no directory or claim"
        return None
    if v.kind == "hostPath":
        if v.claim_name is not None or not v.host_path:
            return (
                "hostPath needs the cache's directory on the nodes, "
                "as in hostPath:/var/cache/llm-launch"
            )
        normalized = normalize_path(v.host_path)
        if isinstance(normalized, str):
            return f"hostPath directory {v.host_path!r} {normalized}"
        if str(normalized) != v.host_path:
            return f"write the hostPath directory {v.host_path!r} as {str(normalized)!r}"
        if str(normalized) == "/":
            return "hostPath directory '/' would put checkpoints at the root of every node"
        return None
    if v.kind == "pvc":
        name = v.claim_name or ""
        if v.host_path is not None or not name:
            return "pvc needs the name of an existing ReadWriteMany claim, as in pvc:model-cache"
        if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
            return (
                f"claim name {name!r} must be a DNS-1123 subdomain: lowercase letters, "
                "digits, '-' and '.', starting and ending with a letter or digit"
            )
        return None
    return f"kind {v.kind!r} is not one of emptyDir, hostPath, pvc"
