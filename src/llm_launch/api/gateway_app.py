"""The app of one `llm-launch gateway` process: the inference routes and nothing else.

Several such processes share a port (`cli/gateway.py`) beside one `llm-launch serve`, to
spread inference over more cores than one process has. Each has the same front as
`serve`'s app (`RequestGuard`: the API keys, bounded bodies; then `InferenceGateway`: the
four completion routes, with the same answers and errors), its own routing table
refreshed from the database, and no backend and no reconciler: the table hands out the
ready targets the reconciler stored (`RoutingTable(stored_targets=True)`). Everything
else is a 404 that says the control-plane API serves it; `/healthz` and `/readyz` answer
for probes and load balancers (deploy/kubernetes/gateway-deployment.yaml), `/metrics` for
Prometheus (its routing table's endpoints by status and age: `api/metrics.py`).

`/readyz` is what a load balancer should trust: 200 only while the routing table is
current, that is it has completed a refresh within STALE_AFTER_REFRESHES periods and the
database answers. The table is filled before the process accepts a connection (the
lifespan's first refresh), and a table that stops refreshing keeps routing on what it
last read, so without this check a process whose refreshes fail while the database still
answers `SELECT 1` (its tables locked by a long migration, or a schema newer than its
code after an upgrade) would stay in the Service while deletes and failures made since
never reach it. A 503 takes it out until its table is current again; `/healthz` stays 200,
as restarting would not help.

A gateway never migrates the database: `serve` does (`store/database.py` says why). One
that finds the schema older than its code (rolled out before the API servers, or started
before `serve` ever ran) starts anyway, not ready: `/readyz` is 503 saying what it waits
for, completions are 503, and it loads its table once `serve` has migrated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llm_launch import __version__
from llm_launch.api.errors import error_body
from llm_launch.api.metrics import ControlPlaneMetrics
from llm_launch.api.routers.health import metrics
from llm_launch.api.wiring import cancel_and_wait, install_guarded_inference
from llm_launch.config.api_keys import ApiKeys
from llm_launch.services.inference import InferenceRouter
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.database import open_database, schema_behind
from llm_launch.store.repository import EndpointRepository

__all__ = ["GatewaySettings", "create_gateway_app"]

ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Refresh periods without a completed refresh after which the process is not ready: a
# slow refresh (a full read of 10,000 rows on a busy core) never trips it, a stuck one does.
STALE_AFTER_REFRESHES = 5
SCHEMA_POLL_S = 2.0  # between two looks at the schema while waiting for serve to migrate

log = logging.getLogger("llm_launch.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """What a gateway process needs: `serve`'s settings of the same names."""

    database_url: str
    api_keys: ApiKeys
    max_request_bytes: int = 1024 * 1024
    header_timeout_s: float = 10.0
    inference_timeout_s: float = 600.0
    refresh_s: float | None = None  # the routing table's; None: its default


def create_gateway_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_database(settings.database_url, migrate_schema=False)
        table = RoutingTable(EndpointRepository(engine), settings.refresh_s, stored_targets=True)
        app.state.schema_wait = await asyncio.to_thread(schema_behind, settings.database_url)
        if app.state.schema_wait is None:
            await table.refresh()  # before the first connection is accepted
            refreshing = asyncio.create_task(table.run_forever(), name="routing-table")
        else:
            log.warning(_waiting_message(app.state.schema_wait))
            loading = _load_once_migrated(app, table, settings.database_url)
            refreshing = asyncio.create_task(loading, name="routing-table")
        app.state.routing_table = table
        app.state.refreshing = refreshing
        app.state.metrics = ControlPlaneMetrics(table, reconciler=False)
        app.state.repository = table.repository
        # The table is its own target source: the targets the reconciler stored.
        app.state.inference = InferenceRouter(table, table, timeout_s=settings.inference_timeout_s)
        try:
            yield
        finally:
            await cancel_and_wait(refreshing)
            await app.state.inference.close()
            await engine.dispose()

    app = FastAPI(
        title="llm-launch gateway",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,  # the control-plane API documents these routes
        docs_url=None,
        redoc_url=None,
    )
    install_guarded_inference(
        app,
        settings.api_keys,
        max_request_bytes=settings.max_request_bytes,
        header_timeout_s=settings.header_timeout_s,
    )
    app.add_api_route("/healthz", _healthz, methods=["GET"])
    app.add_api_route("/readyz", _readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    app.add_api_route("/{path:path}", _elsewhere, methods=ANY_METHOD, include_in_schema=False)
    return app


async def _load_once_migrated(app: FastAPI, table: RoutingTable, database_url: str) -> None:
    """Wait for `serve` to bring the schema to what this code reads, then load and keep
    refreshing the table."""
    while app.state.schema_wait is not None:
        await asyncio.sleep(SCHEMA_POLL_S)
        try:
            app.state.schema_wait = await asyncio.to_thread(schema_behind, database_url)
        except Exception as exc:  # the database is away: say so, keep waiting
            app.state.schema_wait = f"cannot read the database's schema: {exc}"
    log.warning("the database schema is current; loading the routing table")
    try:
        await table.refresh()
    except Exception:  # run_forever tries again, and says so; lookups stay 503 until then
        log.exception("loading the routing table failed")
    await table.run_forever()


def _waiting_message(reason: str) -> str:
    return (
        f"waiting for the control-plane API (llm-launch serve) to migrate the database: "
        f"{reason}; a gateway never migrates it"
    )


async def _healthz() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "ok"}


async def _readyz(request: Request) -> JSONResponse:
    """Ready to route: the routing table is current and the database answers."""
    problem = _stale_table(request.app.state) or await request.app.state.repository.ping()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


def _stale_table(state: Any) -> str | None:
    """Why the routing table is not current, or None."""
    if state.schema_wait is not None:
        return _waiting_message(state.schema_wait)
    table: RoutingTable = state.routing_table
    if state.refreshing.done():
        return "the routing table's refresh has stopped"
    age = time.monotonic() - table.refreshed_at
    if age > STALE_AFTER_REFRESHES * table.refresh_s:
        return f"the routing table has not refreshed for {age:.1f} s"
    return None


async def _elsewhere(request: Request) -> JSONResponse:
    """Not an inference route: the control-plane API (`llm-launch serve`) serves it."""
    message = (
        f"{request.method} {request.url.path} is not served by this inference gateway: "
        "it serves POST /v1/llm/completions-sync, /v1/llm/completions-stream, "
        "/v2/chat/completions and /v2/completions; the control-plane API "
        "(llm-launch serve) serves the rest"
    )
    return JSONResponse(error_body(message), status_code=404)
