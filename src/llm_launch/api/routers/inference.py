"""Completion routes: Launch's `/v1/llm/completions-sync|stream` and OpenAI's `/v2/...`.

Each resolves the caller's endpoint, picks a ready group (services/inference.py) and
relays to that group's forwarder: `/predict` and `/stream` for Launch's shapes, the
engine's OpenAI routes for `/v2`, where `model` names the endpoint. These routes sit on
every request, so they take the raw request (no dependency injection or model parsing
beyond the one fast check of the forwarder's own parser) and relay bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter

from llm_launch.api.auth import current_owner
from llm_launch.domain.errors import FieldError, InvalidRequest, UpstreamFailed
from llm_launch.runtime import launch_api
from llm_launch.services.inference import InferenceRouter, UpstreamReply

router = APIRouter(tags=["inference"])

_LAUNCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TypeAdapter(launch_api.CompletionRequest).json_schema()}
        },
    },
    "parameters": [
        {
            "name": "model_endpoint_name",
            "in": "query",
            "required": True,
            "schema": {"type": "string"},
        }
    ],
}
_OPENAI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": ["model"]}}},
    }
}


@router.post("/v1/llm/completions-sync", openapi_extra=_LAUNCH_BODY)
async def completions_sync(request: Request) -> Response:
    inference, target, body = await _launch_call(request)
    return await _relay(await inference.post(target, "/predict", body))


@router.post("/v1/llm/completions-stream", openapi_extra=_LAUNCH_BODY)
async def completions_stream(request: Request) -> Response:
    inference, target, body = await _launch_call(request)
    return await _relay(await inference.post(target, "/stream", body), stream=True)


@router.post("/v2/chat/completions", openapi_extra=_OPENAI_BODY)
async def chat_completions(request: Request) -> Response:
    return await _openai(request, "/v1/chat/completions")


@router.post("/v2/completions", openapi_extra=_OPENAI_BODY)
async def completions(request: Request) -> Response:
    return await _openai(request, "/v1/completions")


async def _launch_call(request: Request) -> tuple[InferenceRouter, str, bytes]:
    owner = await current_owner(request)
    name = request.query_params.get("model_endpoint_name")
    if not name:
        raise InvalidRequest([FieldError("model_endpoint_name", "is required (query parameter)")])
    body = await request.body()
    try:
        launch_api.parse_completion_request(body)  # the forwarder's own check: fail early here
    except launch_api.InvalidRequest as exc:
        raise InvalidRequest([FieldError(e.field, e.message) for e in exc.errors]) from None
    inference: InferenceRouter = request.app.state.inference
    endpoint = await inference.endpoint(owner, name)
    return inference, inference.pick_target(endpoint), body


async def _openai(request: Request, path: str) -> Response:
    owner = await current_owner(request)
    body = _json_object(await request.body())
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest([FieldError("model", "is required: the name of your endpoint")])
    inference: InferenceRouter = request.app.state.inference
    endpoint = await inference.endpoint(owner, name)
    target = inference.pick_target(endpoint)
    # The engine serves the model under its model name; clients address the endpoint.
    upstream = orjson.dumps({**body, "model": endpoint.spec.model_name})
    return await _relay(
        await inference.post(target, path, upstream), stream=bool(body.get("stream"))
    )


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([FieldError("body", f"is not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    return body


async def _relay(reply: UpstreamReply, *, stream: bool = False) -> Response:
    """Pass answers and client errors (4xx) through; an upstream server error is a 502."""
    if reply.status_code >= 500:
        detail = (await reply.read()).decode(errors="replace")[:500]
        raise UpstreamFailed(f"upstream answered {reply.status_code}: {detail}")
    if stream and reply.status_code == 200:
        return StreamingResponse(
            reply.chunks,
            media_type=reply.content_type,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    return Response(
        await reply.read(), status_code=reply.status_code, media_type=reply.content_type
    )
