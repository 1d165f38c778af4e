"""The simulator's ASGI apps: rank 0's full SGLang-compatible API, and the workers' dummy.

Built by `simulator.server.serve`. Rank 0 gets SGLang's native routes
(`simulator.native`) and the OpenAI routes (`simulator.openai_api`) over one `Engine`;
domain errors become HTTP here, once. Ranks >= 1 get only `GET /health`, which always
answers 200, as real SGLang's non-zero ranks do.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from llm_launch.simulator.args import SimArgs
from llm_launch.simulator.engine import BadGeneration, Engine, LatencyModel, Unavailable
from llm_launch.simulator.group import GroupStatus
from llm_launch.simulator.metrics import Metrics
from llm_launch.simulator.native import native_router
from llm_launch.simulator.openai_api import UnknownModel, openai_router
from llm_launch.simulator.responses import error_response

TITLE = "llm-launch SIMULATED SGLang engine"


def build_app(args: SimArgs, group: GroupStatus) -> FastAPI:
    latency = LatencyModel(
        ttft_s=args.ttft_ms / 1000,
        tpot_s=args.tpot_ms / 1000,
        prefill_us_per_token=args.prefill_us_per_token,
        prefix_cache_tokens=args.prefix_cache_tokens,
    )
    engine = Engine(group, latency, Metrics(args.served_model_name), args.context_length)
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None)
    app.include_router(native_router(engine, args))
    app.include_router(
        openai_router(engine, args.served_model_name, args.model_path, args.context_length)
    )
    _add_error_handlers(app)
    app.state.engine = engine
    return app


def build_worker_app(rank: int) -> FastAPI:
    app = FastAPI(title=f"{TITLE} (rank {rank})", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> Response:
        """Always 200: a worker's health says nothing about the group (as in SGLang)."""
        return Response(status_code=200)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def unavailable(_: Request, exc: Exception) -> Response:
        return error_response(503, str(exc))

    async def bad_generation(_: Request, exc: Exception) -> Response:
        return error_response(400, str(exc))

    async def unknown_model(_: Request, exc: Exception) -> Response:
        return error_response(404, str(exc), param="model")

    async def invalid_body(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}"
            for error in exc.errors()
        ]
        return error_response(400, "; ".join(problems))

    app.add_exception_handler(Unavailable, unavailable)
    app.add_exception_handler(BadGeneration, bad_generation)
    app.add_exception_handler(UnknownModel, unknown_model)
    app.add_exception_handler(RequestValidationError, invalid_body)
