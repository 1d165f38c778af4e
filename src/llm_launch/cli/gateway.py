"""`llm-launch gateway`: serve only the inference routes, in one or more processes.

Beside one `llm-launch serve` (the control-plane API, the reconciler and the backend) on
the same database, `gateway --processes N` runs N processes that each answer the four
completion routes (`api/gateway_app.py`): each binds the same port with SO_REUSEPORT, so
the kernel spreads connections over them, and each keeps its own routing table from the
database, with the ready targets the reconciler stores. The settings they share with
`serve` have the same flags and LLM_LAUNCH_* variables. A gateway never migrates the
database: started on a schema older than its code, it waits, not ready, for `serve` to
migrate it (`api/gateway_app.py`).

The parent process only starts and watches its children: SIGTERM or Ctrl-C stops them
all (each finishes its requests in flight, as uvicorn does), and if one of them exits
the others are stopped too and the command exits non-zero, for its supervisor (systemd,
Kubernetes) to start it again, rather than carrying on short of a process unnoticed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from typing import Annotated, Any

import typer
import uvicorn

from llm_launch.cli.base import app, errors, fail
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
from llm_launch.cli.serve import _log_to_stderr, in_a_cluster
from llm_launch.config.api_keys import ApiKeyConfigError, load_api_keys
from llm_launch.settings import DEFAULT_HOST, default_data_dir, is_loopback
from llm_launch.store.database import default_sqlite_url

STARTUP_FAILURE = 3  # uvicorn's exit code when a server could not start
STOP_WAIT_S = 30.0  # for the children to finish their requests once asked to stop


@app.command()
def gateway(
    port: Annotated[int, typer.Option(envvar="LLM_LAUNCH_GATEWAY_PORT", help="Port to bind.")],
    host: Annotated[
        str, typer.Option(envvar="LLM_LAUNCH_GATEWAY_HOST", help="Address to bind.")
    ] = DEFAULT_HOST,
    processes: Annotated[
        int,
        typer.Option(
            envvar="LLM_LAUNCH_GATEWAY_PROCESSES",
            min=1,
            max=256,
            help="processes sharing the port (SO_REUSEPORT); about one per core to spare",
        ),
    ] = 1,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="LLM_LAUNCH_DATABASE_URL", help="the control plane's database"),
    ] = None,
    data_dir: DataDir = None,
    api_keys_file: ApiKeysFile = None,
    inference_timeout: InferenceTimeout = DEFAULT_INFERENCE_TIMEOUT_S,
    max_request_bytes: MaxRequestBytes = DEFAULT_MAX_REQUEST_BYTES,
    header_timeout: HeaderTimeout = DEFAULT_HEADER_TIMEOUT_S,
    keep_alive_timeout: KeepAliveTimeout = DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Serve the inference routes only, in PROCESSES processes, beside `llm-launch serve`."""
    from llm_launch.api.gateway_app import GatewaySettings

    if not 1 <= port <= 65535:
        raise fail(f"--port must be within 1-65535 (got {port})")
    try:
        keys = load_api_keys(api_keys_file, os.environ.get("LLM_LAUNCH_API_KEYS"))
    except ApiKeyConfigError as exc:
        raise fail(str(exc)) from exc
    if not keys.enabled and not is_loopback(host):
        raise fail(
            f"refusing to bind {host}: no API keys are configured, so anyone who can reach "
            "it could use every endpoint. Set LLM_LAUNCH_API_KEYS or --api-keys-file, "
            "or bind 127.0.0.1."
        )
    if (database_url or "sqlite").startswith("sqlite") and in_a_cluster():
        # In its own pod a SQLite file is a database of its own, empty: every completion
        # would be a 404 while `serve` stores the endpoints elsewhere.
        raise fail(
            "refusing SQLite inside a cluster: the gateway routes to the endpoints that "
            "`llm-launch serve` stores, and a SQLite file here would be this pod's own, "
            "empty database. Set LLM_LAUNCH_DATABASE_URL (or --database-url) to the "
            "PostgreSQL database the control plane uses."
        )
    os.umask(0o077)
    settings = GatewaySettings(
        database_url=database_url or default_sqlite_url(data_dir or default_data_dir()),
        api_keys=keys,
        max_request_bytes=max_request_bytes,
        header_timeout_s=header_timeout,
        inference_timeout_s=inference_timeout,
    )
    server = (settings, host, port, keep_alive_timeout, log_level)
    errors.print(
        f"llm-launch gateway on http://{host}:{port} ({processes} process(es), "
        "inference routes only)",
        highlight=False,
    )
    code = _serve_one(*server) if processes == 1 else _run_children(processes, server)
    if code:
        raise typer.Exit(code)


def _serve_one(settings: Any, host: str, port: int, keep_alive_timeout: int, log_level: str) -> int:
    """Run one gateway server on its own SO_REUSEPORT socket; its exit code."""
    from llm_launch.api.gateway_app import create_gateway_app
    from llm_launch.api.wiring import uvicorn_config

    _log_to_stderr(log_level)
    config = uvicorn_config(
        create_gateway_app(settings),
        log_level=log_level,
        header_timeout_s=settings.header_timeout_s,
        keep_alive_s=keep_alive_timeout,
    )
    server = uvicorn.Server(config)
    try:
        sock = _reuse_port_socket(host, port)
    except OSError as exc:
        errors.print(f"error: cannot bind {host}:{port}: {exc}", highlight=False)
        return STARTUP_FAILURE
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def _child(*server: Any) -> None:
    raise SystemExit(_serve_one(*server))


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on (host, port) that the gateway's other processes (same
    user: the kernel allows no other to join) bind too, connections spread among them.
    `::` listens on IPv6 and IPv4 alike, as `serve --host ::` does (IPV6_V6ONLY off rather
    than the net.ipv6.bindv6only default), and on IPv4 alone where the kernel has no IPv6:
    the Kubernetes manifest runs it so on clusters of either family."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        if address != "::":
            raise
        family, address = socket.AF_INET, "0.0.0.0"
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if address == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def _run_children(count: int, server: tuple[Any, ...]) -> int:
    """Start `count` server processes and wait: until a signal stops them all (0), or one
    exits by itself, which stops the others (its exit code, at least 1)."""
    context = multiprocessing.get_context("spawn")  # no copy of this process's state
    children = [
        context.Process(target=_child, args=server, name=f"llm-launch-gateway-{i}")
        for i in range(count)
    ]
    signalled = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal signalled
        signalled = True
        _terminate(children)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    done = wait([c.sentinel for c in children])
    first = next(c for c in children if c.sentinel in done)
    if not signalled:
        errors.print(
            f"error: gateway process {first.name} exited ({first.exitcode}); stopping the others",
            highlight=False,
        )
        _terminate(children)
    for child in children:
        child.join(STOP_WAIT_S)
        if child.is_alive():
            child.kill()
            child.join()
    if signalled:
        return 0
    return first.exitcode or 1


def _terminate(children: list[Any]) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()  # SIGTERM: uvicorn finishes what is in flight
