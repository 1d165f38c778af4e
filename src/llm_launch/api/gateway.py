"""The lean inference path: the four completion routes as one raw ASGI handler.

Every routed completion crosses this module, so, like the forwarder it relays to
(`runtime/forwarder/app.py`), it does without framework routing, dependency injection and
per-request model objects: `InferenceGateway` sits inside `api.guard.RequestGuard` (which
has authenticated the caller and read a bounded body) and in front of FastAPI, answers
POSTs to the four routes itself, and hands everything else (the control-plane API, other
methods) to FastAPI. `api/routers/inference.py` keeps the routes in the OpenAPI document and
serves them through `serve` too, should the app be mounted without this layer.

Per request: a dict lookup for the route, Launch's body check
(`launch_api.parse_completion_request`) or orjson for the OpenAI body's `model`, the
endpoint from the in-memory routing table (`services/routing_table.py`: no database read,
no thread hop), the least busy ready group and the relay through the pooled client
(`services/inference.py`, which retries a draining group). Nothing is logged per request.

Two ways in. `InferenceGateway`, a middleware inside the app, serves whoever calls the
FastAPI app itself (tests over an ASGI transport). What the servers hand uvicorn is
`InferenceFront` around that app: it takes the completion routes' POSTs before FastAPI's
own middleware stack (its error, body-limit and telemetry layers: about a tenth of the
hop's CPU in a profile under load), through a guard of the same settings, and passes
everything else, lifespan included, to the app, whose middleware serves it as before.

Answers and errors are those of the FastAPI routes they replace: errors go through the
app's own `LaunchError` handler (`api/errors.py`), so status codes and the JSON shape
(`detail`, `errors`) are the same. A client that leaves cancels its request upstream
(`runtime.client_watch`), streams included: the pooled connection to the forwarder closes,
which cancels the engine's request there.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_launch.api.auth import OWNER_STATE_KEY, authenticate
from llm_launch.api.guard import RequestGuard
from llm_launch.config.api_keys import ApiKeys
from llm_launch.domain.errors import FieldError, InvalidRequest, LaunchError, UpstreamFailed
from llm_launch.runtime import launch_api
from llm_launch.runtime.client_watch import ClientWatch
from llm_launch.runtime.forwarder.asgi import read_body
from llm_launch.services.inference import InferenceRouter, UpstreamReply

__all__ = ["ROUTES", "InferenceFront", "InferenceGateway", "Route", "front", "serve"]

STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass(frozen=True, slots=True)
class Route:
    upstream: str  # the forwarder's path
    launch: bool  # Launch's shape (endpoint in the query) or OpenAI's (endpoint in `model`)
    stream: bool = False  # Launch's streaming route; OpenAI's say so in the body


ROUTES = {
    "/v1/llm/completions-sync": Route("/predict", launch=True),
    "/v1/llm/completions-stream": Route("/stream", launch=True, stream=True),
    "/v2/chat/completions": Route("/v1/chat/completions", launch=False),
    "/v2/completions": Route("/v1/completions", launch=False),
}


class InferenceGateway:
    """ASGI layer: the completion routes' POSTs here, everything else to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = ROUTES.get(scope["path"])
            if route is not None:
                await serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)


class InferenceFront:
    """What uvicorn serves: the completion routes' POSTs through `guard` straight to the
    lean path, everything else to `app` (a FastAPI app with `InferenceGateway` and the
    same guard installed, so both ways answer alike); `front` builds it."""

    def __init__(self, app: ASGIApp, guard: ASGIApp) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in ROUTES:
            scope["app"] = self.app  # as Starlette sets it: the lean path reads app.state
            await self.guard(scope, receive, send)
            return
        await self.app(scope, receive, send)


def front(app: ASGIApp, keys: ApiKeys, max_body_bytes: int, body_pause_s: float) -> InferenceFront:
    """`app` behind an `InferenceFront` whose guard has these settings: pass the ones the
    app's own `RequestGuard` was given."""
    guard = RequestGuard(_serve_route, keys, max_body_bytes, body_pause_s)
    return InferenceFront(app, guard)


async def _serve_route(scope: Scope, receive: Receive, send: Send) -> None:
    await serve(ROUTES[scope["path"]], scope, receive, send)


async def serve(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one completion request; a client that leaves cancels it, errors are
    answered by the app's LaunchError handler."""
    body = await read_body(receive)
    if body is None:
        return  # the client left before its request was complete
    watch = ClientWatch(receive, send)
    try:
        try:
            await _answer(route, scope, body, watch.send)
        except LaunchError as exc:
            await _error(scope, exc, receive, watch.send)
    except asyncio.CancelledError:
        if not watch.disconnected:
            raise
        watch.task.uncancel()  # nobody is left to answer
    finally:
        watch.close()


async def _answer(route: Route, scope: Scope, body: bytes, send: Send) -> None:
    app = scope["app"]
    owner = _owner(scope, app)
    inference: InferenceRouter = app.state.inference
    if route.launch:
        name = _query_param(scope, "model_endpoint_name")
        if not name:
            problem = FieldError("model_endpoint_name", "is required (query parameter)")
            raise InvalidRequest([problem])
        try:
            launch_api.parse_completion_request(body)  # the forwarder's own check, early
        except launch_api.InvalidRequest as exc:
            raise InvalidRequest([FieldError(e.field, e.message) for e in exc.errors]) from None
        stream = route.stream
    else:
        parsed = _json_object(body)
        name = parsed.get("model")
        if not isinstance(name, str) or not name:
            raise InvalidRequest([FieldError("model", "is required: the name of your endpoint")])
        stream = bool(parsed.get("stream"))
    endpoint = inference.endpoint(owner, name)
    # `send` picks the group (a 503 naming the status when none is ready). OpenAI bodies
    # go through as sent: the engine serves under the endpoint's name, the `model` the
    # caller sent, so answers carry that name.
    reply = await inference.send(endpoint, route.upstream, body)
    await _relay(reply, send, stream=stream)


def _owner(scope: Scope, app: Any) -> str:
    """The owner RequestGuard found; authenticated here if the guard is not installed."""
    owner = scope.get("state", {}).get(OWNER_STATE_KEY)
    if isinstance(owner, str):
        return owner
    return authenticate(app.state.api_keys, Headers(scope=scope))


def _query_param(scope: Scope, name: str) -> str | None:
    """The last value of `name` in the query string, as Starlette's `query_params` has it."""
    query = scope.get("query_string", b"").decode("latin-1")
    found = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            found = value
    return found


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([FieldError("body", f"is not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    return body


async def _relay(reply: UpstreamReply, send: Send, *, stream: bool) -> None:
    """Pass answers and client errors (4xx) through; an upstream server error is a 502,
    and so is a 401: the forwarder refused the control plane's token, not the caller's."""
    chunks = reply.chunks
    try:
        if reply.status_code >= 500 or reply.status_code == 401:
            detail = (await reply.read()).decode(errors="replace")[:500]
            raise UpstreamFailed(f"upstream answered {reply.status_code}: {detail}")
        content_type = _content_type(reply.content_type)
        if stream and reply.status_code == 200:
            headers = [(b"content-type", content_type), *STREAM_HEADERS]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except LaunchError as exc:  # too late for an error answer: the stream breaks off
                raise RuntimeError(f"stream broken off: {exc.message}") from exc
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        content = await reply.read()
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", content_type),
        ]
        await send({"type": "http.response.start", "status": reply.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})
    finally:
        # Closed now, not when collected: a request cancelled mid-answer closes its
        # pooled connection (the forwarder then cancels the engine's request).
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _content_type(upstream: str) -> bytes:
    """The upstream's type, with the charset Starlette's responses add to text types."""
    if upstream.startswith("text/") and "charset" not in upstream:
        upstream += "; charset=utf-8"
    return upstream.encode("latin-1")


async def _error(scope: Scope, exc: LaunchError, receive: Receive, send: Send) -> None:
    """The answer the app's LaunchError handler gives (api/errors.py), so the lean path
    and the FastAPI routes answer alike."""
    app = scope["app"]
    handler = app.exception_handlers[LaunchError]
    response = handler(Request(scope, receive), exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    await response(scope, receive, send)
