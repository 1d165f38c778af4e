"""`llm-launch endpoints ...`: create, update, list, get, read the logs of and delete
endpoints on a server, through the Launch REST API (`llm_launch.client`).

`create` and `update` can wait for the rollout (`cli/waiting.py`), `logs` can follow a
log, and `list` and `get` print a table, JSON or YAML (`cli/views.py`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from llm_launch.cli.base import console, endpoints_app, errors, fail, read_body
from llm_launch.cli.views import Output, render, render_one
from llm_launch.cli.waiting import EXIT_READY, TIMEOUT_HELP, WAIT_HELP, wait_for_rollout
from llm_launch.client import ApiError, LaunchClient
from llm_launch.settings import DEFAULT_HOST, DEFAULT_PORT

ServerUrl = Annotated[str, typer.Option("--url", envvar="LLM_LAUNCH_URL", help="Server URL.")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="LLM_LAUNCH_API_KEY", help="API key.")
]
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
Wait = Annotated[bool, typer.Option("--wait", help=WAIT_HELP)]
Timeout = Annotated[float, typer.Option("--timeout", help=TIMEOUT_HELP, min=0)]
EXIT_CODES = (
    "\n\nWith --wait, the exit status says how the rollout ended: 0 READY; 1 UPDATE_FAILED "
    "(the reason is printed), or the request was refused; 2 still not READY after --timeout."
)


def _call(url: str, api_key: str | None, method: str, *args: Any) -> Any:
    with LaunchClient(url, api_key) as client:
        try:
            return getattr(client, method)(*args)
        except ApiError as exc:
            raise fail(str(exc)) from exc


@endpoints_app.command(
    "create", help="Create an endpoint from a Launch create-request body." + EXIT_CODES
)
def create_endpoint(
    file: Annotated[Path, typer.Option("-f", "--file", help="Request body (JSON); - for stdin.")],
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    wait: Wait = False,
    timeout: Timeout = 1800.0,
) -> None:
    body = read_body(file)
    result = _call(url, api_key, "create_endpoint", body)
    console.print(f"created; task id {result['endpoint_creation_task_id']}", highlight=False)
    if wait:
        _wait(url, api_key, str(body.get("name")), timeout, None)


@endpoints_app.command("update", help="Change an endpoint's mutable fields." + EXIT_CODES)
def update_endpoint(
    name: str,
    file: Annotated[
        Path, typer.Option("-f", "--file", help="Fields to change (JSON); - for stdin.")
    ],
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    wait: Wait = False,
    timeout: Timeout = 1800.0,
) -> None:
    body = read_body(file)
    # The endpoint as it was: a READY from before this update must not end the wait.
    before = _call(url, api_key, "get_endpoint", name)["spec"]["last_updated_at"] if wait else None
    result = _call(url, api_key, "update_endpoint", name, body)
    console.print(f"updated; task id {result['endpoint_creation_task_id']}", highlight=False)
    if wait:
        _wait(url, api_key, name, timeout, before)


def _wait(url: str, api_key: str | None, name: str, timeout: float, before: str | None) -> None:
    with LaunchClient(url, api_key) as client:
        outcome = wait_for_rollout(
            lambda: client.get_endpoint(name), name, timeout, console, updated_after=before
        )
    if outcome.code == EXIT_READY:
        console.print(outcome.message, highlight=False)
        return
    errors.print(f"[bold red]error:[/] {outcome.message}", highlight=False, markup=True)
    raise typer.Exit(code=outcome.code)


OutputOption = Annotated[
    Output,
    typer.Option(
        "-o",
        "--output",
        help="table (fits 80 columns, the reason shortened), wide (more columns, the full "
        "reason), json or yaml",
    ),
]


@endpoints_app.command("list")
def list_endpoints(
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    include_deleting: Annotated[
        bool, typer.Option(help="also endpoints whose teardown is still going on")
    ] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """List your endpoints."""
    endpoints = _call(url, api_key, "list_endpoints", None, include_deleting)
    typer.echo(render(endpoints, output), nl=False)


@endpoints_app.command("get")
def get_endpoint(
    name: str,
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Annotated[
        Output,
        typer.Option("-o", "--output", help="json (the whole answer), yaml, table or wide"),
    ] = Output.JSON,
) -> None:
    """Show one endpoint (by default the API's answer as JSON)."""
    typer.echo(render_one(_call(url, api_key, "get_endpoint", name), output), nl=False)


@endpoints_app.command("logs")
def endpoint_logs(
    name: str,
    rank: Annotated[int, typer.Option(help="engine rank (0 = leader)")] = 0,
    group: Annotated[int, typer.Option(help="replica group")] = 0,
    forwarder: Annotated[bool, typer.Option(help="the leader's forwarder instead")] = False,
    tail: Annotated[int, typer.Option(help="lines")] = 200,
    follow: Annotated[
        bool,
        typer.Option("-f", "--follow", help="keep printing what the process writes, until Ctrl-C"),
    ] = False,
    url: ServerUrl = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print the last lines of one process's log (and, with --follow, what comes after)."""
    if not follow:
        text = _call(url, api_key, "endpoint_logs", name, group, rank, forwarder, tail)
        typer.echo(text, nl=False)
        return
    with LaunchClient(url, api_key) as client:
        try:
            for chunk in client.follow_endpoint_logs(name, group, rank, forwarder, tail):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        except ApiError as exc:
            raise fail(str(exc)) from exc
        except KeyboardInterrupt:  # the way to stop following
            raise typer.Exit(code=130) from None


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
