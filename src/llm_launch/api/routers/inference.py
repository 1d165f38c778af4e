"""Completion routes: Launch's `/v1/llm/completions-sync|stream` and OpenAI's `/v2/...`.

Each resolves the caller's endpoint, picks a ready group (services/inference.py) and
relays to that group's forwarder: `/predict` and `/stream` for Launch's shapes, the
engine's OpenAI routes for `/v2`, where `model` names the endpoint: the name the engine
serves under, so the body is relayed unchanged and answers carry the name the caller sent.
These routes sit on every request, so they take the raw request (no dependency injection or
model parsing beyond the one fast check of the forwarder's own parser) and relay bytes.

A client that leaves cancels its request upstream: while a route waits for the forwarder
(`runtime.client_watch`), a disconnect cancels the wait, which closes the pooled connection to the
forwarder, which cancels the engine's request there. Streamed answers get the same from
Starlette, which stops the stream when its client leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter

from llm_launch.api.auth import current_owner
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, InvalidRequest, UpstreamFailed
from llm_launch.runtime import launch_api
from llm_launch.runtime.client_watch import ClientWatch
from llm_launch.services.inference import InferenceRouter, UpstreamReply

router = APIRouter(tags=["inference"])

CLIENT_CLOSED_REQUEST = 499  # what a request whose client left "answers": nobody reads it

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
    return await _watched(request, lambda: _launch(request, "/predict", stream=False))


@router.post("/v1/llm/completions-stream", openapi_extra=_LAUNCH_BODY)
async def completions_stream(request: Request) -> Response:
    return await _watched(request, lambda: _launch(request, "/stream", stream=True))


@router.post("/v2/chat/completions", openapi_extra=_OPENAI_BODY)
async def chat_completions(request: Request) -> Response:
    return await _watched(request, lambda: _openai(request, "/v1/chat/completions"))


@router.post("/v2/completions", openapi_extra=_OPENAI_BODY)
async def completions(request: Request) -> Response:
    return await _watched(request, lambda: _openai(request, "/v1/completions"))


async def _watched(request: Request, answer: Callable[[], Awaitable[Response]]) -> Response:
    """`answer()`, cancelled if the client leaves before it is ready (streams: until
    their headers are in; Starlette watches the rest)."""
    await request.body()  # read (and kept) first: the watch then owns `receive`
    watch = ClientWatch(request.receive)
    try:
        return await answer()
    except asyncio.CancelledError:
        if not watch.disconnected:
            raise
        watch.task.uncancel()
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    finally:
        watch.close()


async def _launch(request: Request, path: str, *, stream: bool) -> Response:
    inference, endpoint, body = await _launch_call(request)
    return await _relay(await inference.send(endpoint, path, body), stream=stream)


async def _launch_call(request: Request) -> tuple[InferenceRouter, Endpoint, bytes]:
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
    inference.pick_target(endpoint)  # 503 now, with the status, if no group is ready
    return inference, endpoint, body


async def _openai(request: Request, path: str) -> Response:
    owner = await current_owner(request)
    raw = await request.body()
    body = _json_object(raw)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest([FieldError("model", "is required: the name of your endpoint")])
    inference: InferenceRouter = request.app.state.inference
    endpoint = await inference.endpoint(owner, name)
    inference.pick_target(endpoint)  # 503 now, with the status, if no group is ready
    # The engine serves under the endpoint's name (`EndpointSpec.served_model_name`), the
    # `model` the caller sent: the body goes through as sent, and answers carry that name.
    return await _relay(await inference.send(endpoint, path, raw), stream=bool(body.get("stream")))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([FieldError("body", f"is not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    return body


async def _relay(reply: UpstreamReply, *, stream: bool = False) -> Response:
    """Pass answers and client errors (4xx) through; an upstream server error is a 502,
    and so is a 401: the forwarder refused the control plane's token, not the caller's."""
    if reply.status_code >= 500 or reply.status_code == 401:
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
