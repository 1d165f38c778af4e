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
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.names import dns1123_label_problem
from llm_launch.domain.quantity import is_quantity
from llm_launch.engines.options import PlanOptions

__all__ = ["DEFAULT_IMAGE_REPOSITORIES", "KubernetesConfig", "KubernetesConfigError"]

# Our engine images (deploy/images/), which carry the engine plus the llm-launch runtime
# (`llm-launch-startup`, `llm-launch-forwarder`); the tag is the endpoint's
# `inference_framework_image_tag`.
DEFAULT_IMAGE_REPOSITORIES: Mapping[str, str] = {
    "sglang": "ghcr.io/llm-launch/sglang",
    "vllm": "ghcr.io/llm-launch/vllm",
}

RESTART_POLICIES = ("RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


class KubernetesConfigError(ValueError):
    """The Kubernetes settings cannot produce working objects; the message names the field."""


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str = "default"
    # Tells this installation's objects from another's in a shared namespace.
    control_plane_id: str = "default"
    image_repositories: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_IMAGE_REPOSITORIES)
    )
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
    gpu_resource: str = "nvidia.com/gpu"
    # Memory-backed /dev/shm for NCCL and the engines' shared memory; capped at the
    # endpoint's memory, which it counts against.
    shm_size: str = "64Gi"
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
    if not 1 <= c.service_port <= 65535:
        problems.append(f"service_port must be 1-65535 (got {c.service_port})")
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", c.autoscaling_metric):
        problems.append(f"autoscaling_metric {c.autoscaling_metric!r} is not a metric name")
    if c.termination_grace_period_s < 0:
        problems.append("termination_grace_period_s must be >= 0")
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
