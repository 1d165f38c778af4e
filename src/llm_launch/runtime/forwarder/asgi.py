"""HTTP plumbing of the forwarder app: ASGI responses, the one error-to-HTTP mapping, and
the relays that pass engine streams on as they arrive.

Called by the forwarder app (`runtime.forwarder.app`) for every response it writes; the
next hop is the client, through uvicorn's ASGI `send`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx

from llm_launch.runtime.forwarder.client import EngineResponse, Headers
from llm_launch.runtime.forwarder.engines import StreamMapper
from llm_launch.runtime.forwarder.stream import (
    DONE,
    EngineStreamError,
    SseDecoder,
    encode_event,
    stream_chunk,
    stream_error_chunk,
)
from llm_launch.runtime.launch_api import EngineBodyError, InvalidRequest, compact_json

__all__ = [
    "HOP_BY_HOP",
    "SSE_HEADERS",
    "ForwarderError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "as_http_error",
    "engine_answered",
    "is_event_stream",
    "not_allowed",
    "not_found",
    "read_body",
    "relay_launch_stream",
    "relay_raw_stream",
    "respond",
    "respond_error",
    "respond_json",
    "respond_unauthorized",
    "saturated",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
     b"trailer", b"upgrade", b"host", b"content-length", b"expect"}
)  # fmt: skip
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ForwarderError(Exception):
    """An answer other than success, decided before the response started."""

    def __init__(self, status: int, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, "code": status, **extra}}


def is_event_stream(headers: Headers) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


async def relay_raw_stream(response: EngineResponse, send: Send) -> None:
    """Engine SSE bytes to the client as they arrive; an engine failure mid-stream becomes
    an SSE `error` event (which OpenAI clients raise as an APIError)."""
    try:
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.TransportError as exc:
        message = f"engine failed mid-stream: {exc}"
        error = {"error": {"message": message, "type": "engine_unavailable", "code": 502}}
        await send({"type": "http.response.body", "body": encode_event(error), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def relay_launch_stream(
    response: EngineResponse, mapper: StreamMapper, request_id: str, send: Send
) -> None:
    """Engine SSE to Launch stream chunks, one send per piece the engine sent."""
    decoder = SseDecoder()
    error: tuple[int, str] | None = None
    try:
        async for piece in response.chunks():
            outputs = [
                mapper.flush() if payload == DONE else mapper.output(payload)
                for payload in decoder.feed(piece)
            ]
            events = [encode_event(stream_chunk(request_id, o)) for o in outputs if o is not None]
            if events:
                body = events[0] if len(events) == 1 else b"".join(events)
                await send({"type": "http.response.body", "body": body, "more_body": True})
    except httpx.TransportError as exc:
        error = (502, f"engine failed mid-stream: {exc}")
    except EngineStreamError as exc:
        error = (exc.status_code, str(exc))
    except EngineBodyError as exc:
        error = (502, str(exc))
    held = mapper.flush()
    last = b"" if held is None else encode_event(stream_chunk(request_id, held))
    if error is not None:
        last += encode_event(stream_error_chunk(request_id, *error, _now()))
    await send({"type": "http.response.body", "body": last, "more_body": False})


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client left before sending it all."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if message["type"] == "http.request" else None
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def respond_json(send: Send, status: int, body: Any, request_id: str | None = None) -> None:
    content = compact_json(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await respond(send, status, headers, content)


async def respond_error(send: Send, error: ForwarderError) -> None:
    await respond_json(send, error.status, error.body)


async def respond_unauthorized(send: Send) -> None:
    """401: the request lacks the endpoint's token. The answer names the header, never
    the token, and the same answer serves a missing and a wrong one."""
    message = "this forwarder answers only its control plane (Authorization: Bearer <token>)"
    content = compact_json({"error": {"type": "unauthorized", "message": message, "code": 401}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await respond(send, 401, headers, content)


def as_http_error(
    exc: ForwarderError | InvalidRequest | httpx.TransportError | EngineBodyError,
) -> ForwarderError:
    """The one place where failures become HTTP answers."""
    if isinstance(exc, ForwarderError):
        return exc
    if isinstance(exc, InvalidRequest):
        return _invalid(exc)
    if isinstance(exc, httpx.TransportError):
        return _unavailable(exc)
    return ForwarderError(502, "engine_error", str(exc))


def _invalid(exc: InvalidRequest) -> ForwarderError:
    fields = [{"field": e.field, "message": e.message} for e in exc.errors]
    return ForwarderError(422, "invalid_request", f"invalid request: {exc}", fields=fields)


def saturated(limit: int) -> ForwarderError:
    message = f"the forwarder already has {limit} requests in flight (--max-concurrency)"
    return ForwarderError(429, "overloaded", message)


def _unavailable(exc: httpx.TransportError) -> ForwarderError:
    kind = type(exc).__name__
    return ForwarderError(502, "engine_unavailable", f"engine unavailable ({kind}): {exc}")


def engine_answered(status: int, content: bytes) -> ForwarderError:
    try:
        detail: Any = json.loads(content)
    except ValueError:
        detail = content.decode("utf-8", "replace")[:2000]
    return ForwarderError(status, "engine_error", f"engine answered {status}", engine_body=detail)


def not_found(scope: Scope) -> ForwarderError:
    return ForwarderError(404, "not_found", f"no route {scope['path']}")


def not_allowed(scope: Scope, allowed: str) -> ForwarderError:
    message = f"{scope['method']} not allowed on {scope['path']} (use {allowed})"
    return ForwarderError(405, "methodnot_allowed", message)
