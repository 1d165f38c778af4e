"""PlanOptions: the installation's settings that shape launch plans (ports, network, budgets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.engines.plan import IpFamily, Ports


@dataclass(frozen=True)
class PlanOptions:
    ports: Ports = field(default_factory=Ports)
    # Interface NCCL and Gloo use between nodes; the wrong one is the most common
    # multi-node failure, so it is always set explicitly.
    socket_ifname: str = "eth0"
    ip_family: IpFamily = IpFamily.AUTO
    cluster_domain: str | None = None  # appended to LWS_LEADER_ADDRESS when set
    bind_host: str | None = None  # engine bind address; None: "::" or "0.0.0.0" by family
    weights_dir: str = "/models"
    startup_budget_s: int = 1800  # weight download and load, before the leader must be healthy
    worker_wait_timeout_s: int = 1200
    resolve_timeout_s: int = 300
    forwarder_max_concurrency: int = 256
    # A leader that was ready and then fails its generation check for this long is
    # restarted, and so its whole group recreated: by Kubernetes (the engine container's
    # livenessProbe) and by the local backend's supervision loop alike.
    hang_restart_s: int = 30
    # On scale-down, rollout and delete, a group's forwarder stops taking requests and
    # in-flight ones (streams included) get this long to finish before the engine stops.
    drain_grace_s: int = 90
    startup_program: tuple[str, ...] = ("llm-launch-startup",)
    forwarder_program: tuple[str, ...] = ("llm-launch-forwarder",)

    def check(self) -> None:
        """Raise InvalidRequest if the options cannot produce a working group."""
        errors = []
        named = {
            "engine": self.ports.engine,
            "rendezvous": self.ports.rendezvous,
            "forwarder": self.ports.forwarder,
        }
        for name, port in named.items():
            if not 1 <= port <= 65535:
                errors.append(FieldError(f"ports.{name}", f"must be 1-65535 (got {port})"))
        if len(set(named.values())) != len(named):
            errors.append(
                FieldError(
                    "ports",
                    "engine, rendezvous and forwarder ports must be distinct "
                    f"(got engine={self.ports.engine}, rendezvous={self.ports.rendezvous}, "
                    f"forwarder={self.ports.forwarder})",
                )
            )
        if not self.socket_ifname:
            errors.append(FieldError("socket_ifname", "must name a network interface"))
        for name in (
            "startup_budget_s",
            "worker_wait_timeout_s",
            "resolve_timeout_s",
            "forwarder_max_concurrency",
            "hang_restart_s",
        ):
            if getattr(self, name) < 1:
                errors.append(FieldError(name, "must be >= 1"))
        if self.drain_grace_s < 0:
            errors.append(FieldError("drain_grace_s", "must be >= 0"))
        if errors:
            raise InvalidRequest(errors)
