"""The `llm-launch` command: run the server, and manage endpoints on a server."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from llm_launch.backends.local.environment import parse_pass_env, pass_env_errors
from llm_launch.client import ApiError, LaunchClient
from llm_launch.config.api_keys import ApiKeyConfigError, load_api_keys
from llm_launch.config.loader import CatalogError, load_hardware_catalog
from llm_launch.config.quotas import DEFAULT_QUOTA, QuotaBook, QuotaConfigError, parse_limit
from llm_launch.domain.checkpoints import parse_checkpoint_roots
from llm_launch.domain.quotas import Quota
from llm_launch.http_timeouts import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    header_timeout_protocol,
)
from llm_launch.settings import DEFAULT_HOST, DEFAULT_PORT, Settings, default_data_dir, is_loopback
from llm_launch.store.database import default_sqlite_url

app = typer.Typer(
    no_args_is_help=True, help="llm-launch: a control plane for LLM inference endpoints."
)
endpoints_app = typer.Typer(
    no_args_is_help=True, help="Create, list, inspect and delete endpoints."
)
app.add_typer(endpoints_app, name="endpoints")
console = Console()
errors = Console(stderr=True)


WEIGHTS_VOLUME_HELP = (
    "where pods keep downloaded checkpoints: emptyDir (one copy per pod, downloaded again "
    "on every group recreate), hostPath:/DIR (a cache per node, one directory per "
    "checkpoint; needs a cluster that allows hostPath volumes) or pvc:CLAIM (an existing "
    "ReadWriteMany claim, one subdirectory per checkpoint)"
)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


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
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="LLM_LAUNCH_DATA_DIR", help="Where the default SQLite file lives."),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(envvar="LLM_LAUNCH_API_KEYS_FILE", help="File of OWNER:KEY lines."),
    ] = None,
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
        str, typer.Option(envvar="LLM_LAUNCH_KUBERNETES_NAMESPACE", help="where endpoints run")
    ] = "default",
    kubernetes_control_plane_id: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_KUBERNETES_CONTROL_PLANE_ID",
            help="unique per installation sharing a namespace (GC keeps to its own)",
        ),
    ] = "default",
    kubernetes_weights_volume: Annotated[
        str,
        typer.Option(
            envvar="LLM_LAUNCH_KUBERNETES_WEIGHTS_VOLUME",
            help=WEIGHTS_VOLUME_HELP,
        ),
    ] = "emptyDir",
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
    inference_timeout: Annotated[
        float,
        typer.Option(
            envvar="LLM_LAUNCH_INFERENCE_TIMEOUT_S",
            help="seconds to wait for an answer to start, or between streamed chunks (504 after)",
        ),
    ] = 600.0,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            envvar="LLM_LAUNCH_MAX_REQUEST_BYTES",
            min=1,
            help="largest request body accepted; a larger one is a 413 and is not read",
        ),
    ] = 1024 * 1024,
    header_timeout: Annotated[
        float,
        typer.Option(
            envvar="LLM_LAUNCH_HEADER_TIMEOUT_S",
            min=0.1,
            help="seconds a client has to send a request's line and headers (from connecting, "
            "or from the first byte of a further request; the connection is closed after), "
            "and the longest pause while its body arrives (408 after)",
        ),
    ] = DEFAULT_HEADER_TIMEOUT_S,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(
            envvar="LLM_LAUNCH_KEEP_ALIVE_TIMEOUT_S",
            min=1,
            help="seconds an idle kept-alive connection stays open",
        ),
    ] = DEFAULT_KEEP_ALIVE_TIMEOUT_S,
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
    log_level: Annotated[str, typer.Option(envvar="LLM_LAUNCH_LOG_LEVEL")] = "info",
) -> None:
    """Run the API server (SQLite in the user data directory unless a database URL is given)."""
    from llm_launch.api.app import create_app

    try:
        keys = load_api_keys(api_keys_file, os.environ.get("LLM_LAUNCH_API_KEYS"))
        catalog = load_hardware_catalog(hardware_catalog)
        quotas = QuotaBook(
            Quota(
                max_endpoints=parse_limit(quota_max_endpoints, "--quota-max-endpoints"),
                max_groups=parse_limit(quota_max_groups, "--quota-max-groups"),
                max_gpus=parse_limit(quota_max_gpus, "--quota-max-gpus"),
            ),
            keys.quota_overrides,
        )
        roots = parse_checkpoint_roots(checkpoint_roots)
    except (ApiKeyConfigError, CatalogError, QuotaConfigError) as exc:
        raise _fail(str(exc)) from exc
    except ValueError as exc:
        raise _fail(f"--checkpoint-roots: {exc}") from exc
    if not keys.enabled and not is_loopback(host):
        raise _fail(
            f"refusing to bind {host}: no API keys are configured, so anyone who can reach "
            "it would control every endpoint. Set LLM_LAUNCH_API_KEYS or --api-keys-file, "
            "or bind 127.0.0.1."
        )
    if backend not in ("local", "kubernetes", "none"):
        raise _fail(f"--backend must be local, kubernetes or none (got {backend!r})")
    try:
        _weights_volume(kubernetes_weights_volume)
    except ValueError as exc:
        raise _fail(f"--kubernetes-weights-volume: {exc}") from exc
    if engine_mode not in ("auto", "simulated", "real"):
        raise _fail(f"--engine-mode must be auto, simulated or real (got {engine_mode!r})")
    first, _, last = local_ports.partition("-")
    if not (first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535):
        raise _fail(f"--local-ports must be FIRST-LAST within 1024-65535 (got {local_ports!r})")
    passed = parse_pass_env(pass_env)
    if refused := pass_env_errors(passed):
        raise _fail(f"--pass-env: {'; '.join(refused)}")
    if local_max_processes is not None and local_max_processes < 1:
        raise _fail(f"--local-max-processes must be at least 1 (got {local_max_processes})")
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
        kubernetes_namespace=kubernetes_namespace,
        kubernetes_control_plane_id=kubernetes_control_plane_id,
        kubernetes_weights_volume=kubernetes_weights_volume,
        kubeconfig=kubeconfig,
        inference_timeout_s=inference_timeout,
        max_request_bytes=max_request_bytes,
        header_timeout_s=header_timeout,
        keep_alive_timeout_s=keep_alive_timeout,
        local_ports=(int(first), int(last)),
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
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )


ServerUrl = Annotated[str, typer.Option("--url", envvar="LLM_LAUNCH_URL", help="Server URL.")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="LLM_LAUNCH_API_KEY", help="API key.")
]
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def _call(url: str, api_key: str | None, method: str, *args: Any) -> Any:
    with LaunchClient(url, api_key) as client:
        try:
            return getattr(client, method)(*args)
        except ApiError as exc:
            raise _fail(str(exc)) from exc


def _read_body(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        body = json.loads(text)
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise _fail(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _fail(f"{path} must hold a JSON object")
    return body


BodyFile = Annotated[Path, typer.Option("-f", "--file", help="Create-request body (JSON).")]
IpFamilyOption = Annotated[str, typer.Option(help="auto, ipv4 or ipv6")]
SocketIfnameOption = Annotated[str, typer.Option(help="NCCL/Gloo network interface")]
ClusterDomainOption = Annotated[str | None, typer.Option(help="appended to the leader's name")]
CatalogOption = Annotated[Path | None, typer.Option(envvar="LLM_LAUNCH_HARDWARE_CATALOG")]


@contextmanager
def _explained() -> Iterator[None]:
    """Turn a refused request or bad configuration into one line on stderr and exit 1."""
    from llm_launch.domain.errors import InvalidRequest

    try:
        yield
    except InvalidRequest as exc:
        raise _fail("invalid request: " + "; ".join(str(e) for e in exc.errors)) from exc
    except (CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _weights_volume(text: str) -> Any:
    """The parsed weights volume setting; a ValueError (KubernetesConfigError) says the fix."""
    from llm_launch.backends.kubernetes.config import WeightsVolume

    return WeightsVolume.parse(text)


def _plan_options(ip_family: str, socket_ifname: str, cluster_domain: str | None) -> Any:
    from llm_launch.engines.options import PlanOptions
    from llm_launch.engines.plan import IpFamily

    return PlanOptions(
        ip_family=IpFamily(ip_family), socket_ifname=socket_ifname, cluster_domain=cluster_domain
    )


@app.command()
def plan(
    file: BodyFile,
    ip_family: IpFamilyOption = "auto",
    socket_ifname: SocketIfnameOption = "eth0",
    cluster_domain: ClusterDomainOption = None,
    hardware_catalog: CatalogOption = None,
) -> None:
    """Print the launch plan of a create request (roles, commands, env, ports) as JSON."""
    from llm_launch.domain.spec import build_spec
    from llm_launch.engines.planner import plan_launch

    with _explained():
        spec = build_spec(_read_body(file), load_hardware_catalog(hardware_catalog))
        launch_plan = plan_launch(spec, _plan_options(ip_family, socket_ifname, cluster_domain))
    typer.echo(json.dumps(launch_plan.to_dict(), indent=2))


@app.command()
def render(
    file: BodyFile,
    namespace: Annotated[str, typer.Option(help="namespace of the objects")] = "default",
    owner: Annotated[str, typer.Option(help="owner label of the objects")] = "local",
    endpoint_id: Annotated[
        str | None, typer.Option(help="endpoint id label; default: derived from owner and name")
    ] = None,
    ip_family: IpFamilyOption = "auto",
    socket_ifname: SocketIfnameOption = "eth0",
    cluster_domain: ClusterDomainOption = None,
    image_repository: Annotated[
        str | None, typer.Option(help="engine image repository (default: ours for the framework)")
    ] = None,
    weights_volume: Annotated[str, typer.Option(help=WEIGHTS_VOLUME_HELP)] = "emptyDir",
    hardware_catalog: CatalogOption = None,
) -> None:
    """Print the Kubernetes objects of a create request as multi-document YAML."""
    from llm_launch.backends.kubernetes.config import DEFAULT_IMAGE_REPOSITORIES, KubernetesConfig
    from llm_launch.backends.kubernetes.render import (
        EndpointIdentity,
        derived_endpoint_id,
        render_spec,
        to_yaml,
        token_secret_notice,
    )
    from llm_launch.domain.names import label_value_problem
    from llm_launch.domain.spec import build_spec

    for option, value in (("--owner", owner), ("--endpoint-id", endpoint_id or "")):
        if label_value_problem(value):
            raise _fail(f"{option}: {label_value_problem(value)}")
    with _explained():
        catalog = load_hardware_catalog(hardware_catalog)
        spec = build_spec(_read_body(file), catalog)
        repositories = dict(DEFAULT_IMAGE_REPOSITORIES)
        if image_repository:
            repositories[spec.inference_framework] = image_repository
        config = KubernetesConfig(
            namespace=namespace,
            image_repositories=repositories,
            catalog=catalog,
            plan_options=_plan_options(ip_family, socket_ifname, cluster_domain),
            weights_volume=_weights_volume(weights_volume),
        )
        identity = EndpointIdentity(
            name=spec.name,
            endpoint_id=endpoint_id or derived_endpoint_id(owner, spec.name),
            owner=owner,
        )
        objects = render_spec(spec, config, identity)
    typer.echo(token_secret_notice(spec, config, identity) + to_yaml(objects), nl=False)


@endpoints_app.command("create")
def create_endpoint(
    file: Annotated[Path, typer.Option("-f", "--file", help="Request body (JSON); - for stdin.")],
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Create an endpoint from a Launch create-request body."""
    result = _call(url, api_key, "create_endpoint", _read_body(file))
    console.print(f"created; task id {result['endpoint_creation_task_id']}", highlight=False)


@endpoints_app.command("update")
def update_endpoint(
    name: str,
    file: Annotated[
        Path, typer.Option("-f", "--file", help="Fields to change (JSON); - for stdin.")
    ],
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Change an endpoint's mutable fields."""
    result = _call(url, api_key, "update_endpoint", name, _read_body(file))
    console.print(f"updated; task id {result['endpoint_creation_task_id']}", highlight=False)


@endpoints_app.command("list")
def list_endpoints(
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    include_deleting: Annotated[
        bool, typer.Option(help="also endpoints whose teardown is still going on")
    ] = False,
) -> None:
    """List your endpoints."""
    table = Table("NAME", "FRAMEWORK", "MODEL", "STATUS", "WORKERS", "NODES", "GPUS", "REASON")
    table.columns[0].no_wrap = True
    table.columns[3].no_wrap = True
    for e in _call(url, api_key, "list_endpoints", None, include_deleting):
        deployment, resources = e["spec"]["deployment_state"], e["spec"]["resource_state"]
        table.add_row(
            e["name"],
            e["inference_framework"],
            e["model_name"],
            e["status"],
            f"{deployment['available_workers']}/{deployment['min_workers']}-{deployment['max_workers']}",
            str(resources["nodes_per_worker"]),
            f"{resources['gpus']} x {resources['gpu_type'] or '-'}",
            e["spec"].get("status_reason") or "",
        )
    console.print(table)


@endpoints_app.command("get")
def get_endpoint(name: str, url: ServerUrl = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Show one endpoint as JSON."""
    typer.echo(json.dumps(_call(url, api_key, "get_endpoint", name), indent=2))


@endpoints_app.command("logs")
def endpoint_logs(
    name: str,
    rank: Annotated[int, typer.Option(help="engine rank (0 = leader)")] = 0,
    group: Annotated[int, typer.Option(help="replica group")] = 0,
    forwarder: Annotated[bool, typer.Option(help="the leader's forwarder instead")] = False,
    tail: Annotated[int, typer.Option(help="lines")] = 200,
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print the last lines of one process's log."""
    typer.echo(_call(url, api_key, "endpoint_logs", name, group, rank, forwarder, tail), nl=False)


@endpoints_app.command("delete")
def delete_endpoint(
    name: str,
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    wait: Annotated[
        bool, typer.Option(help="wait until everything it ran is gone and its name is free")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = 1800.0,
) -> None:
    """Delete an endpoint and everything it runs. The server answers at once and tears the
    endpoint down in the background; --wait polls until that has finished."""
    _call(url, api_key, "delete_endpoint", name)
    if not wait:
        console.print(
            f"deleted {name}; its teardown continues in the background (its name is free once "
            "it ends: see `llm-launch endpoints list --include-deleting`, or pass --wait)",
            highlight=False,
        )
        return
    console.print(f"deleted {name}; waiting for its teardown to finish", highlight=False)
    _wait_until_gone(url, api_key, name, timeout)
    console.print(f"{name} is gone; its name is free", highlight=False)


def _wait_until_gone(url: str, api_key: str | None, name: str, timeout: float) -> None:
    """Poll the list (deletes in progress included) until `name` has left it; each new
    reason (a failed teardown being retried, say) is printed once."""
    deadline = time.monotonic() + timeout
    shown: str | None = None
    while True:
        left = _call(url, api_key, "list_endpoints", name, True)
        if not left:
            return
        reason = left[0]["spec"].get("status_reason")
        if reason and reason != shown:
            console.print(f"  {reason}", highlight=False)
            shown = reason
        if time.monotonic() > deadline:
            raise _fail(f"{name} is still being deleted after {timeout:g}s: {reason}")
        time.sleep(1.0)
