"""The FastAPI application: wires settings, store, services and routers together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from llm_launch import __version__
from llm_launch.api.errors import install_error_handlers
from llm_launch.api.routers import endpoints, health
from llm_launch.services.endpoints import EndpointService
from llm_launch.settings import Settings
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_database(settings.database_url)
        app.state.endpoints = EndpointService(EndpointRepository(engine), settings.catalog)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="llm-launch",
        version=__version__,
        description="Self-hosted control plane for LLM inference endpoints (Launch LLM API).",
        lifespan=lifespan,
    )
    app.state.api_keys = settings.api_keys
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(endpoints.router)
    return app
