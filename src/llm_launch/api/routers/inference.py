"""Completion routes: Launch's `/v1/llm/completions-sync|stream` and OpenAI's `/v2/...`.

Served by the lean inference path (`api/gateway.py`), which answers their POSTs before
FastAPI routes anything. They are declared here for the OpenAPI document (their bodies
and parameters), and answer through the same `gateway.serve` should a request reach them
(an app mounted without the gateway layer): one implementation, whichever way in.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.types import Receive, Scope, Send

from llm_launch.api.gateway import ROUTES, Route, serve
from llm_launch.runtime import launch_api

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


class _Served(Response):
    """A response that is the lean path's answer to the request (`gateway.serve`)."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(self.route, scope, receive, send)


@router.post("/v1/llm/completions-sync", openapi_extra=_LAUNCH_BODY)
async def completions_sync() -> Response:
    return _Served(ROUTES["/v1/llm/completions-sync"])


@router.post("/v1/llm/completions-stream", openapi_extra=_LAUNCH_BODY)
async def completions_stream() -> Response:
    return _Served(ROUTES["/v1/llm/completions-stream"])


@router.post("/v2/chat/completions", openapi_extra=_OPENAI_BODY)
async def chat_completions() -> Response:
    return _Served(ROUTES["/v2/chat/completions"])


@router.post("/v2/completions", openapi_extra=_OPENAI_BODY)
async def completions() -> Response:
    return _Served(ROUTES["/v2/completions"])
