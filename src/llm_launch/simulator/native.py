"""SGLang's native routes on rank 0: health, generation check, /generate, info, metrics.

Mounted by `simulator.app.build_app`; every generation goes through `simulator.engine`.
Errors raised here (`Unavailable`, `BadGeneration`) are turned into HTTP once, by the
handlers in `simulator.app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_launch.simulator.args import SimArgs
from llm_launch.simulator.engine import Engine, Generation, Sampling, Step, Unavailable
from llm_launch.simulator.protocol import GenerateRequest
from llm_launch.simulator.responses import (
    CLIENT_LEFT,
    DONE_EVENT,
    ENGINE_NAME,
    error_body,
    event_stream,
    sse_event,
    unless_client_leaves,
)
from llm_launch.simulator.tokens import Finish

HEALTH_PROMPT = "health check"


def native_router(engine: Engine, args: SimArgs) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> Response:
        """Alive: this process answers. Says nothing about the group (as in SGLang)."""
        return Response(status_code=200)

    @router.get("/health_generate")
    async def health_generate() -> Response:
        """A real one-token generation through the same path as requests."""
        try:
            await engine.start(HEALTH_PROMPT, Sampling(max_tokens=1)).final()
        except Unavailable as exc:
            body = {"status": "unhealthy", "reason": str(exc), "simulated": True}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "simulated": True})

    @router.post("/generate")
    async def generate(body: GenerateRequest, request: Request) -> Response:
        generation = engine.start(body.text, body.sampling())
        if body.stream:
            return event_stream(_events(generation))
        step = await unless_client_leaves(generation.final(), request)
        if step is None:
            return CLIENT_LEFT
        return JSONResponse({"text": step.text, "meta_info": _meta_info(generation, step)})

    @router.get("/get_server_info")
    async def server_info() -> Response:
        info = {
            "simulated": True,
            "engine": ENGINE_NAME,
            **args.as_info(),
            "group": engine.group.describe(),
        }
        return JSONResponse(info)

    @router.get("/get_model_info")
    async def model_info() -> Response:
        return JSONResponse(
            {"model_path": args.model_path, "tokenizer_path": None, "is_generation": True}
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _events(generation: Generation) -> AsyncIterator[bytes]:
    try:
        async for step in generation.steps():
            yield sse_event({"text": step.text, "meta_info": _meta_info(generation, step)})
    except Unavailable as exc:
        yield sse_event({"error": error_body(503, str(exc))})
    yield DONE_EVENT


def _meta_info(generation: Generation, step: Step) -> dict[str, Any]:
    return {
        "id": generation.id,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "cached_tokens": generation.cached_tokens or 0,
        "finish_reason": _finish_reason(step.finish, step.completion_tokens),
        "e2e_latency": step.elapsed_s,
    }


def _finish_reason(finish: Finish | None, completion_tokens: int) -> dict[str, Any] | None:
    if finish is None:
        return None
    if finish.reason == "stop":
        return {"type": "stop", "matched": finish.matched}
    return {"type": "length", "length": completion_tokens}
