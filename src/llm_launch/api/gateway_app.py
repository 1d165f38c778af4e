"""The app of one `llm-launch gateway` process: the inference routes and nothing else.

Several such processes share a port (`cli/gateway.py`) beside one `llm-launch serve`, to
spread inference over more cores than one process has. Each has the same front as
`serve`'s app (`RequestGuard`: the API keys, bounded bodies; then `InferenceGateway`: the
four completion routes, with the same answers and errors), its own routing table
refreshed from the database, and no backend and no reconciler: the table hands out the
ready targets the reconciler stored (`RoutingTable(stored_targets=True)`). Everything
else is a 404 that says the control-plane API serves it; `/healthz` and `/readyz` answer
for probes and load balancers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llm_launch import __version__
from llm_launch.api.errors import error_body, install_error_handlers
from llm_launch.api.gateway import InferenceGateway
from llm_launch.api.guard import RequestGuard
from llm_launch.config.api_keys import ApiKeys
from llm_launch.services.inference import InferenceRouter
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository

__all__ = ["GatewaySettings", "create_gateway_app"]

ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


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
        engine = open_database(settings.database_url)
        table = RoutingTable(EndpointRepository(engine), settings.refresh_s, stored_targets=True)
        await table.refresh()
        refreshing = asyncio.create_task(table.run_forever(), name="routing-table")
        app.state.routing_table = table
        app.state.repository = table.repository
        # The table is its own target source: the targets the reconciler stored.
        app.state.inference = InferenceRouter(table, table, timeout_s=settings.inference_timeout_s)
        try:
            yield
        finally:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
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
    app.state.api_keys = settings.api_keys
    install_error_handlers(app)
    app.add_middleware(InferenceGateway)
    app.add_middleware(
        RequestGuard,
        keys=settings.api_keys,
        max_body_bytes=settings.max_request_bytes,
        body_pause_s=settings.header_timeout_s,
    )
    app.add_api_route("/healthz", _healthz, methods=["GET"])
    app.add_api_route("/readyz", _readyz, methods=["GET"])
    app.add_api_route("/{path:path}", _elsewhere, methods=ANY_METHOD, include_in_schema=False)
    return app


async def _healthz() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "ok"}


async def _readyz(request: Request) -> JSONResponse:
    """Ready to route: the database answers (the table refreshes from it)."""
    repository: EndpointRepository = request.app.state.repository
    problem = await repository.ping()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _elsewhere(request: Request) -> JSONResponse:
    """Not an inference route: the control-plane API (`llm-launch serve`) serves it."""
    message = (
        f"{request.method} {request.url.path} is not served by this inference gateway: "
        "it serves POST /v1/llm/completions-sync, /v1/llm/completions-stream, "
        "/v2/chat/completions and /v2/completions; the control-plane API "
        "(llm-launch serve) serves the rest"
    )
    return JSONResponse(error_body(message), status_code=404)
