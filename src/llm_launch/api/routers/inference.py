"""Completion routes: Launch's `/v1/llm/completions-sync|stream` and OpenAI's `/v2/...`.

Each resolves the caller's endpoint, picks a ready group (services/inference.py) and
relays to that group's forwarder: `/predict` and `/stream` for Launch's shapes, the
engine's OpenAI routes for `/v2`, where `model` names the endpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from llm_launch.api.auth import current_owner
from llm_launch.domain.errors import FieldError, InvalidRequest, UpstreamFailed

# One definition of Launch's completion request, shared with the forwarder that maps it.
from llm_launch.runtime.launch_api import CompletionRequest
from llm_launch.services.inference import InferenceRouter

router = APIRouter(tags=["inference"])
Owner = Annotated[str, Depends(current_owner)]


def _router(request: Request) -> InferenceRouter:
    inference: InferenceRouter = request.app.state.inference
    return inference


Router = Annotated[InferenceRouter, Depends(_router)]


EndpointName = Annotated[str, Query(description="the endpoint to send the request to")]


@router.post("/v1/llm/completions-sync")
async def completions_sync(
    body: CompletionRequest, model_endpoint_name: EndpointName, owner: Owner, inference: Router
) -> Response:
    endpoint = await inference.endpoint(owner, model_endpoint_name)
    target = inference.pick_target(endpoint)
    reply = await inference.post(target, "/predict", _fields(body))
    return _relay(reply.status_code, reply.body, reply.content_type)


@router.post("/v1/llm/completions-stream")
async def completions_stream(
    body: CompletionRequest, model_endpoint_name: EndpointName, owner: Owner, inference: Router
) -> Response:
    endpoint = await inference.endpoint(owner, model_endpoint_name)
    return await _stream(inference, inference.pick_target(endpoint), "/stream", _fields(body))


@router.post("/v2/chat/completions")
async def chat_completions(
    body: Annotated[dict[str, Any], Body()], owner: Owner, inference: Router
) -> Response:
    return await _openai(inference, owner, "/v1/chat/completions", body)


@router.post("/v2/completions")
async def completions(
    body: Annotated[dict[str, Any], Body()], owner: Owner, inference: Router
) -> Response:
    return await _openai(inference, owner, "/v1/completions", body)


async def _openai(
    inference: InferenceRouter, owner: str, path: str, body: dict[str, Any]
) -> Response:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest([FieldError("model", "is required: the name of your endpoint")])
    endpoint = await inference.endpoint(owner, name)
    target = inference.pick_target(endpoint)
    # The engine serves the model under its model name; clients address the endpoint.
    upstream = {**body, "model": endpoint.spec.model_name}
    if body.get("stream"):
        return await _stream(inference, target, path, upstream)
    reply = await inference.post(target, path, upstream)
    return _relay(reply.status_code, reply.body, reply.content_type)


async def _stream(
    inference: InferenceRouter, target: str, path: str, body: dict[str, Any]
) -> Response:
    response, chunks = await inference.open_stream(target, path, body)
    if response.status_code != 200:
        content = b"".join([chunk async for chunk in chunks])
        return _relay(response.status_code, content, response.headers.get("content-type", ""))
    return StreamingResponse(
        chunks,
        media_type=response.headers.get("content-type", "text/event-stream"),
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _fields(body: CompletionRequest) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(body).items() if v is not None}


def _relay(status_code: int, content: bytes, content_type: str) -> Response:
    """Pass client errors (4xx) through; an upstream server error becomes a 502."""
    if status_code >= 500:
        detail = content.decode(errors="replace")[:500]
        raise UpstreamFailed(f"upstream answered {status_code}: {detail}")
    return Response(content, status_code=status_code, media_type=content_type or None)
