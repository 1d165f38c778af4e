"""`llm-launch endpoints ...`: create, update, list, get, read the logs of and delete
endpoints on a server, through the Launch REST API (`llm_launch.client`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_launch.cli.base import console, endpoints_app, fail, read_body
from llm_launch.client import ApiError, LaunchClient
from llm_launch.settings import DEFAULT_HOST, DEFAULT_PORT

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
            raise fail(str(exc)) from exc


@endpoints_app.command("create")
def create_endpoint(
    file: Annotated[Path, typer.Option("-f", "--file", help="Request body (JSON); - for stdin.")],
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Create an endpoint from a Launch create-request body."""
    result = _call(url, api_key, "create_endpoint", read_body(file))
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
    result = _call(url, api_key, "update_endpoint", name, read_body(file))
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
            raise fail(f"{name} is still being deleted after {timeout:g}s: {reason}")
        time.sleep(1.0)
