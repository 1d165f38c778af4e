"""`llm-launch serve`: read the settings (flags, then LLM_LAUNCH_* variables, then
defaults), refuse what cannot work with one clear line, and run the API server."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from llm_launch.backends.local.environment import parse_pass_env, pass_env_errors
from llm_launch.cli.base import WEIGHTS_VOLUME_HELP, app, errors, fail, parse_weights_volume
from llm_launch.cli.options import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_INFERENCE_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_REQUEST_BYTES,
    ApiKeysFile,
    DataDir,
    HeaderTimeout,
    InferenceTimeout,
    KeepAliveTimeout,
    LogLevel,
    MaxRequestBytes,
)
from llm_launch.config.api_keys import ApiKeyConfigError, ApiKeys, load_api_keys
from llm_launch.config.loader import CatalogError, load_hardware_catalog
from llm_launch.config.quotas import DEFAULT_QUOTA, QuotaBook, QuotaConfigError, parse_limit
from llm_launch.domain.checkpoints import parse_checkpoint_roots
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.quotas import Quota
from llm_launch.settings import DEFAULT_HOST, DEFAULT_PORT, Settings, default_data_dir, is_loopback
from llm_launch.store.database import default_sqlite_url

if TYPE_CHECKING:
    from llm_launch.config.kubernetes import InstallationConfig


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="LLM_LAUNCH_HOST", help="Address to bind.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="LLM_LAUNCH_PORT")] = DEFAULT_PORT,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="LLM_LAUNCH_DATABASE_URL", help="sqlite:///PATH or postgresql://..."),
    ] = None,
    data_dir: DataDir = None,
    api_keys_file: ApiKeysFile = None,
    hardware_catalog: Annotated[
        Path | None, typer.Option(envvar="LLM_LAUNCH_HARDWARE_CATALOG", help="GPU types YAML.")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_BACKEND", help="local (processes here), kubernetes, or none"
        ),
    ] = "local",
    kubernetes_namespace: Annotated[
        str | None,
        typer.Option(
            envvar="LLM_LAUNCH_KUBERNETES_NAMESPACE",
            help="where endpoints run (default: the config file's, else default)",
        ),
    ] = None,
    kubernetes_control_plane_id: Annotated[
        str | None,
        typer.Option(
            envvar="LLM_LAUNCH_KUBERNETES_CONTROL_PLANE_ID",
            help="unique per installation sharing a namespace (GC keeps to its own)",
        ),
    ] = None,
    kubernetes_weights_volume: Annotated[
        str | None,
        typer.Option(
            envvar="LLM_LAUNCH_KUBERNETES_WEIGHTS_VOLUME",
            help=WEIGHTS_VOLUME_HELP,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="LLM_LAUNCH_CONFIG",
            help="installation configuration (YAML: Kubernetes images, tags, priority "
            "classes, pods, timings; deploy/kubernetes/config.example.yaml); flags win over it",
        ),
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="default: in-cluster or ~/.kube/config")
    ] = None,
    engine_mode: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_ENGINE_MODE",
            help="local backend: auto (real engine only with a GPU and the engine installed), "
            "simulated or real",
        ),
    ] = "auto",
    local_ports: Annotated[
        str,
        typer.Option(envvar="LLM_LAUNCH_LOCAL_PORTS", help="local backend: FIRST-LAST port range"),
    ] = "20000-29999",
    inference_timeout: InferenceTimeout = DEFAULT_INFERENCE_TIMEOUT_S,
    max_request_bytes: MaxRequestBytes = DEFAULT_MAX_REQUEST_BYTES,
    header_timeout: HeaderTimeout = DEFAULT_HEADER_TIMEOUT_S,
    keep_alive_timeout: KeepAliveTimeout = DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    quota_max_endpoints: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_QUOTA_MAX_ENDPOINTS",
            help="endpoints per owner (a number or 'unlimited'); max_endpoints=N after a key "
            "overrides it",
        ),
    ] = str(DEFAULT_QUOTA.max_endpoints),
    quota_max_groups: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_QUOTA_MAX_GROUPS",
            help="replica groups per owner, counting max_workers of each endpoint",
        ),
    ] = str(DEFAULT_QUOTA.max_groups),
    quota_max_gpus: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_QUOTA_MAX_GPUS",
            help="GPUs per owner (gpus x nodes_per_worker x max_workers of each endpoint)",
        ),
    ] = "unlimited",
    checkpoint_roots: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_CHECKPOINT_ROOTS",
            help="DIR[,DIR]: local checkpoints (file://, absolute paths) must be under one; "
            "none by default, refusing them",
        ),
    ] = "",
    local_max_processes: Annotated[
        int | None,
        typer.Option(
            envvar="LLM_LAUNCH_LOCAL_MAX_PROCESSES",
            help="local backend: processes all groups may run at once (default: 8 per CPU, "
            "at least 16); groups beyond it wait for capacity",
        ),
    ] = None,
    pass_env: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_PASS_ENV",
            help="local backend: NAME[,PREFIX*] of this server's variables its processes also "
            "get (e.g. AWS_*,HF_TOKEN); they get only an allow-list otherwise",
        ),
    ] = "",
    hang_restart_s: Annotated[
        int | None,
        typer.Option(
            envvar="LLM_LAUNCH_HANG_RESTART_S",
            min=1,
            help="seconds a ready leader may fail its generation check before its group is "
            "recreated (default 30; Kubernetes: the engine's livenessProbe)",
        ),
    ] = None,
    drain_grace_s: Annotated[
        int | None,
        typer.Option(
            envvar="LLM_LAUNCH_DRAIN_GRACE_S",
            min=0,
            help="seconds in-flight requests get to finish when a group leaves (scale-down, "
            "rollout, delete) before its engine stops (default 90; Kubernetes: preStop hooks)",
        ),
    ] = None,
    leader_lease_name: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_LEADER_LEASE_NAME",
            help="kubernetes backend: the Lease electing the one replica that reconciles "
            "(default llm-launch-<control plane id>)",
        ),
    ] = "",
    leader_identity: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_LEADER_IDENTITY",
            help="kubernetes backend: this replica's name in the Lease (default: POD_NAME, "
            "else host_pid)",
        ),
    ] = "",
    leader_lease_duration_s: Annotated[
        int,
        typer.Option(
            envvar="LLM_LAUNCH_LEADER_LEASE_DURATION_S",
            min=1,
            help="kubernetes backend: seconds after the leader's last renewal before another "
            "replica may take over",
        ),
    ] = 15,
    leader_renew_deadline_s: Annotated[
        float,
        typer.Option(
            envvar="LLM_LAUNCH_LEADER_RENEW_DEADLINE_S",
            help="kubernetes backend: seconds the leader keeps trying to renew before it "
            "stops reconciling (shorter than the lease duration)",
        ),
    ] = 10.0,
    leader_retry_period_s: Annotated[
        float,
        typer.Option(
            envvar="LLM_LAUNCH_LEADER_RETRY_PERIOD_S",
            help="kubernetes backend: seconds between tries to take or renew the Lease",
        ),
    ] = 2.0,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Run the API server (SQLite in the user data directory unless a database URL is given)."""
    from llm_launch.api.app import create_app
    from llm_launch.api.wiring import uvicorn_config

    keys, catalog, quotas, roots = _access_settings(
        api_keys_file,
        hardware_catalog,
        (quota_max_endpoints, quota_max_groups, quota_max_gpus),
        checkpoint_roots,
    )
    if not keys.enabled and not is_loopback(host):
        raise fail(
            f"refusing to bind {host}: no API keys are configured, so anyone who can reach "
            "it would control every endpoint. Set LLM_LAUNCH_API_KEYS or --api-keys-file, "
            "or bind 127.0.0.1."
        )
    ports, passed = _backend_settings(
        backend,
        kubernetes_weights_volume or "emptyDir",
        engine_mode,
        local_ports,
        pass_env,
        local_max_processes,
    )
    installation = _installation(
        config_file,
        backend,
        catalog,
        {
            "kubernetes.namespace": kubernetes_namespace,
            "kubernetes.control_plane_id": kubernetes_control_plane_id,
            "kubernetes.weights_volume": kubernetes_weights_volume,
            "kubernetes.plan_options.hang_restart_s": hang_restart_s,
            "kubernetes.plan_options.drain_grace_s": drain_grace_s,
        },
    )
    _refuse_private_sqlite(backend, database_url, kubeconfig)
    _check_leader_settings(
        backend,
        leader_lease_name,
        leader_identity,
        (leader_lease_duration_s, leader_renew_deadline_s, leader_retry_period_s),
    )
    # Everything the server and its processes create (database, logs, records, weights)
    # is private to its user: folders 0700, files 0600.
    os.umask(0o077)
    data_dir = data_dir or default_data_dir()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings = Settings(
        database_url=database_url or default_sqlite_url(data_dir),
        host=host,
        port=port,
        data_dir=data_dir,
        api_keys=keys,
        catalog=catalog,
        quotas=quotas,
        checkpoint_roots=roots,
        backend=backend,
        engine_mode=engine_mode,
        kubernetes_namespace=installation.kubernetes.namespace if installation else "default",
        kubernetes_control_plane_id=(
            installation.kubernetes.control_plane_id if installation else "default"
        ),
        kubernetes_weights_volume=(
            str(installation.kubernetes.weights_volume) if installation else "emptyDir"
        ),
        installation=installation,
        kubeconfig=kubeconfig,
        leader_lease_name=leader_lease_name,
        leader_identity=leader_identity,
        leader_lease_duration_s=leader_lease_duration_s,
        leader_renew_deadline_s=leader_renew_deadline_s,
        leader_retry_period_s=leader_retry_period_s,
        inference_timeout_s=inference_timeout,
        max_request_bytes=max_request_bytes,
        header_timeout_s=header_timeout,
        keep_alive_timeout_s=keep_alive_timeout,
        local_ports=ports,
        local_max_processes=local_max_processes,
        pass_env=passed,
        hang_restart_s=hang_restart_s,
        drain_grace_s=drain_grace_s,
    )
    mode = (
        f"{len(keys.owners)} owner(s) with API keys"
        if keys.enabled
        else "single local owner, no API keys"
    )
    errors.print(f"llm-launch serving on http://{host}:{port} ({mode})", highlight=False)
    _log_to_stderr(log_level)
    config = uvicorn_config(
        create_app(settings, pace_gc=True),
        host=host,
        port=port,
        log_level=log_level,
        header_timeout_s=settings.header_timeout_s,
        keep_alive_s=settings.keep_alive_timeout_s,
    )
    server = uvicorn.Server(config)
    server.run(sockets=_dual_stack(host, port))
    if not server.started:
        raise typer.Exit(3)  # uvicorn's STARTUP_FAILURE; it said why


def _dual_stack(host: str, port: int) -> list[socket.socket] | None:
    """`--host ::` listens on IPv6 and IPv4 (one socket, IPV6_V6ONLY off, as Linux allows:
    ipv6(7)), so the Service and probes reach the server on single-stack clusters of either
    family and on dual-stack ones. uvicorn alone would not: asyncio's create_server sets
    IPV6_V6ONLY on every IPv6 socket, making `::` IPv6-only. Where the kernel has no IPv6,
    IPv4 alone. Other hosts: None, uvicorn binds them itself."""
    if host not in ("::", "[::]"):
        return None
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        return [sock]
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    return [sock]


def _installation(
    config_file: Path | None,
    backend: str,
    catalog: HardwareCatalog,
    flags: dict[str, object | None],
) -> InstallationConfig | None:
    """The configuration file with the flags given over it (flags win), checked: for the
    Kubernetes backend always, for the others only when a file is given (so a bad one is
    still refused at start). Every problem is one line naming its key."""
    if backend != "kubernetes" and config_file is None:
        return None
    from llm_launch.config.kubernetes import ConfigFileError, load_installation_config

    overrides = {key: value for key, value in flags.items() if value is not None}
    try:
        return load_installation_config(config_file, overrides, {"catalog": catalog})
    except ConfigFileError as exc:
        raise fail(str(exc)) from exc


def _access_settings(
    api_keys_file: Path | None,
    hardware_catalog: Path | None,
    quota_limits: tuple[str, str, str],
    checkpoint_roots: str,
) -> tuple[ApiKeys, HardwareCatalog, QuotaBook, tuple[PurePosixPath, ...]]:
    """Keys (with their owners' quotas), the hardware catalog, the quotas and the
    checkpoint roots; a bad one stops `serve` with one line (never a key)."""
    max_endpoints, max_groups, max_gpus = quota_limits
    try:
        keys = load_api_keys(api_keys_file, os.environ.get("LLM_LAUNCH_API_KEYS"))
        catalog = load_hardware_catalog(hardware_catalog)
        quotas = QuotaBook(
            Quota(
                max_endpoints=parse_limit(max_endpoints, "--quota-max-endpoints"),
                max_groups=parse_limit(max_groups, "--quota-max-groups"),
                max_gpus=parse_limit(max_gpus, "--quota-max-gpus"),
            ),
            keys.quota_overrides,
        )
        roots = parse_checkpoint_roots(checkpoint_roots)
    except (ApiKeyConfigError, CatalogError, QuotaConfigError) as exc:
        raise fail(str(exc)) from exc
    except ValueError as exc:
        raise fail(f"--checkpoint-roots: {exc}") from exc
    return keys, catalog, quotas, roots


def _backend_settings(
    backend: str,
    kubernetes_weights_volume: str,
    engine_mode: str,
    local_ports: str,
    pass_env: str,
    local_max_processes: int | None,
) -> tuple[tuple[int, int], tuple[str, ...]]:
    """The backend's options, checked: the local port range and the names to pass on."""
    if backend not in ("local", "kubernetes", "none"):
        raise fail(f"--backend must be local, kubernetes or none (got {backend!r})")
    try:
        parse_weights_volume(kubernetes_weights_volume)
    except ValueError as exc:
        raise fail(f"--kubernetes-weights-volume: {exc}") from exc
    if engine_mode not in ("auto", "simulated", "real"):
        raise fail(f"--engine-mode must be auto, simulated or real (got {engine_mode!r})")
    first, _, last = local_ports.partition("-")
    if not (first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535):
        raise fail(f"--local-ports must be FIRST-LAST within 1024-65535 (got {local_ports!r})")
    passed = parse_pass_env(pass_env)
    if refused := pass_env_errors(passed):
        raise fail(f"--pass-env: {'; '.join(refused)}")
    if local_max_processes is not None and local_max_processes < 1:
        raise fail(f"--local-max-processes must be at least 1 (got {local_max_processes})")
    return (int(first), int(last)), passed


def _refuse_private_sqlite(backend: str, database_url: str | None, kubeconfig: str | None) -> None:
    """SQLite is refused for the Kubernetes backend inside a cluster (no kubeconfig given and
    KUBERNETES_SERVICE_HOST set, which the kubelet sets in every container: the in-cluster
    service account is then used). There the file would live on the pod's own volume, so
    each replica of the Deployment would have a database of its own: endpoints created
    through one replica would be unknown to the others, and the elected reconciler would
    delete their objects as garbage. Outside a cluster, processes on one machine share one
    SQLite file safely (SQLite locks it), so development keeps working without PostgreSQL."""
    url = database_url or "sqlite://"
    if backend != "kubernetes" or not url.startswith("sqlite") or kubeconfig is not None:
        return
    if in_a_cluster():
        raise fail(
            "refusing SQLite with --backend kubernetes inside a cluster: each replica of the "
            "control plane would have a database of its own (on its pod's volume). Set "
            "LLM_LAUNCH_DATABASE_URL (or --database-url) to a PostgreSQL database that every "
            "replica shares."
        )


def in_a_cluster() -> bool:
    """Whether this process runs in a Kubernetes container (the kubelet sets
    KUBERNETES_SERVICE_HOST in every one)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _check_leader_settings(
    backend: str, lease_name: str, identity: str, timings: tuple[int, float, float]
) -> None:
    """The leader election's settings, checked as client-go checks them (only the
    Kubernetes backend elects; the others run one process)."""
    if backend != "kubernetes":
        return
    from llm_launch.backends.kubernetes.leader import LeaseSettings

    duration, renew_deadline, retry_period = timings
    lease = LeaseSettings(
        "any", lease_name or "any", identity or "any", duration, renew_deadline, retry_period
    )
    if problems := lease.problems():
        raise fail(f"--leader-*: {'; '.join(problems)}")


def _log_to_stderr(level: str) -> None:
    """The server's own log lines (which replica leads, what it applied, why an apply
    failed) on stderr at `--log-level`, beside uvicorn's; without a handler Python shows
    only warnings."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logger = logging.getLogger("llm_launch")
    logger.addHandler(handler)
    known = logging.getLevelNamesMapping()
    logger.setLevel(known.get(level.upper(), logging.DEBUG))  # uvicorn's "trace": everything
