"""Liveness, readiness and metrics of the control plane itself (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llm_launch.api.metrics import CONTENT_TYPE, ControlPlaneMetrics
from llm_launch.services.endpoints import EndpointService

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve the API: the database answers (readiness)."""
    service: EndpointService = request.app.state.endpoints
    problem = await service.repository.ping()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The control plane's Prometheus metrics (api/metrics.py): counts, no owner's names."""
    registry: ControlPlaneMetrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
