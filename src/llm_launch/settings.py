"""Server settings: where they come from (CLI flags, then LLM_LAUNCH_* variables, then defaults)."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import platformdirs

from llm_launch.config.api_keys import ApiKeys
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.config.quotas import QuotaBook
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.engines.options import PlanOptions

if TYPE_CHECKING:
    from llm_launch.config.kubernetes import InstallationConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("llm-launch", appauthor=False))


@dataclass
class Settings:
    database_url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    catalog: HardwareCatalog = field(default_factory=load_hardware_catalog)
    quotas: QuotaBook = field(default_factory=QuotaBook)  # per-owner limits, see config/quotas
    # Directories local checkpoints (file://, absolute paths) may be under; none: refused.
    checkpoint_roots: tuple[PurePosixPath, ...] = ()
    backend: str = "local"  # "local" or "none" (store only: endpoints stay UPDATE_PENDING)
    engine_mode: str = "auto"  # local backend: "auto", "simulated" or "real"
    local_ports: tuple[int, int] = (20000, 29999)  # local backend: ports its groups may use
    # local backend: processes its groups may run at once (None: the backend's default)
    local_max_processes: int | None = None
    # local backend: server variables its processes also get (names or PREFIX* patterns)
    pass_env: tuple[str, ...] = ()
    reconcile_interval_s: float = 0.5
    inference_timeout_s: float = 600.0  # wait for an answer to start, or between chunks
    max_request_bytes: int = 1024 * 1024  # a larger request body is a 413, never read whole
    header_timeout_s: float = 10.0  # a request head not complete in this time: closed
    keep_alive_timeout_s: int = 5  # an idle kept-alive connection: closed after this
    kubernetes_namespace: str = "default"
    kubernetes_control_plane_id: str = "default"  # unique per installation sharing a namespace
    # Where pods keep downloaded checkpoints: emptyDir, hostPath:DIR or pvc:CLAIM
    # (backends/kubernetes/config.py, WeightsVolume).
    kubernetes_weights_volume: str = "emptyDir"
    # The Kubernetes backend's configuration and timings, from the configuration file and
    # the flags over it (config/kubernetes.py); None: built from the fields above.
    installation: InstallationConfig | None = None
    kubeconfig: str | None = None  # None: $KUBECONFIG, in-cluster, then ~/.kube/config
    # Kubernetes backend: the Lease electing the one replica that reconciles
    # (backends/kubernetes/leader.py; "" name: llm-launch-<control plane id>, "" identity:
    # POD_NAME, else host_pid), with client-go's default timings.
    leader_lease_name: str = ""
    leader_identity: str = ""
    leader_lease_duration_s: int = 15
    leader_renew_deadline_s: float = 10.0
    leader_retry_period_s: float = 2.0
    # Both backends (None: engines.options.PlanOptions' defaults, 30 s and 90 s): a ready
    # leader failing its generation check this long is restarted, group and all; a group
    # leaving gives in-flight requests this long to finish before its engine stops.
    hang_restart_s: int | None = None
    drain_grace_s: int | None = None

    def plan_options(self) -> PlanOptions:
        """PlanOptions with the fields these settings set (the others keep their defaults)."""
        defaults = PlanOptions()
        return dataclasses.replace(
            defaults,
            hang_restart_s=self.hang_restart_s or defaults.hang_restart_s,
            drain_grace_s=defaults.drain_grace_s
            if self.drain_grace_s is None
            else self.drain_grace_s,
        )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
