"""LaunchPlan: what each container of a replica group runs, as plain data.

Built by `engines.planner.plan_launch` (a pure function of the spec and PlanOptions);
read by the backends, which turn it into processes (local) or pod templates
(Kubernetes), and by `llm-launch plan`, which prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    LEADER = "leader"  # rank 0: serves HTTP, hosts the rendezvous
    WORKER = "worker"  # ranks 1..n-1: join the leader


class IpFamily(StrEnum):
    AUTO = "auto"  # follow the pod's own address
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True)
class Ports:
    """Ports of one pod. The engine's HTTP port and the rendezvous port must differ."""

    engine: int = 5005  # engine HTTP (`--port`); the forwarder forwards here
    rendezvous: int = 5002  # SGLang `--dist-init-addr` port / Ray head port, on the leader
    forwarder: int = 5000  # our forwarder, in front of the engine on the leader


@dataclass(frozen=True)
class Probe:
    """An HTTP probe, in Kubernetes terms (the local backend polls the same routes)."""

    kind: str  # "startup", "readiness" or "liveness"
    path: str
    port: int
    period_s: int
    failure_threshold: int
    timeout_s: int = 5
    initial_delay_s: int = 0


@dataclass(frozen=True)
class ContainerPlan:
    """One process (local) or container (Kubernetes) of a pod."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    ports: Mapping[str, int]
    probes: tuple[Probe, ...] = ()
    # Run (in the container, with its environment) before it is stopped: Kubernetes'
    # `lifecycle.preStop.exec`, and the local backend before it stops a group.
    pre_stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolePlan:
    """Every container of one pod role. One worker plan serves all worker ranks:
    each reads its rank from LWS_WORKER_INDEX at run time."""

    role: Role
    containers: tuple[ContainerPlan, ...]

    def container(self, name: str) -> ContainerPlan:
        return next(c for c in self.containers if c.name == name)


@dataclass(frozen=True)
class EngineRoutes:
    """HTTP routes of the engine on the leader."""

    health: str  # liveness of the engine process (on workers: a dummy that says nothing)
    generation_check: str | None  # GET route doing a real one-token generation, if any
    generate: str | None  # native generation route (/generate), if any
    chat_completions: str = "/v1/chat/completions"
    completions: str = "/v1/completions"
    models: str = "/v1/models"
    metrics: str = "/metrics"


@dataclass(frozen=True)
class LaunchPlan:
    """What one replica group of an endpoint runs."""

    endpoint_name: str
    framework: str
    nodes: int  # pods per group, leader included (LWS `size`)
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    ports: Ports
    routes: EngineRoutes
    served_model_name: str
    leader: RolePlan
    worker: RolePlan | None  # None for single-node endpoints
    extra_engine_args: tuple[str, ...] = field(default=())
    hang_restart_s: int = 30  # PlanOptions.hang_restart_s: a ready leader failing its
    # generation check this long is restarted (its group recreated)
    drain_grace_s: int = 90  # PlanOptions.drain_grace_s: in-flight requests' time to finish

    @property
    def roles(self) -> tuple[RolePlan, ...]:
        return (self.leader,) if self.worker is None else (self.leader, self.worker)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
