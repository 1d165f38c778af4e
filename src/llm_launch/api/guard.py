"""The first thing every HTTP request meets: authentication, then a bounded body read.

A pure ASGI middleware, outermost around the routes (`api.app.create_app` installs it).
For every path but the open ones (health, readiness, the OpenAPI document and its
viewers) it authenticates the caller from the headers alone, so a request without a
valid key is a 401 whatever its body: nothing parses, validates or stores anything for
it. It then reads the body, refusing one over `max_body_bytes` with a 413, whether its
size was announced by Content-Length (refused before a byte of it is read) or it arrives
chunked, and answering 408 when the body stops arriving for `body_pause_s` (a client
that sends its headers and then trickles or withholds its body would otherwise hold the
connection for ever). The routes get the buffered body. The owner goes into the request's
state, where `api.auth.current_owner` finds it.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_launch.api.auth import OWNER_STATE_KEY, authenticate
from llm_launch.api.errors import error_body, unauthenticated_headers
from llm_launch.config.api_keys import ApiKeys
from llm_launch.domain.errors import FieldError, Unauthenticated
from llm_launch.runtime.deadlines import deadline

__all__ = ["OPEN_PATHS", "RequestGuard", "is_protected"]

# Everything else needs a key: a route added later is protected unless listed here.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})


def is_protected(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith("/docs/")


class _TooLarge(Exception):
    pass


class RequestGuard:
    def __init__(
        self, app: ASGIApp, keys: ApiKeys, max_body_bytes: int, body_pause_s: float = 10.0
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.body_pause_s = body_pause_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if is_protected(scope["path"]):
            try:
                owner = authenticate(self.keys, headers)
            except Unauthenticated as exc:
                response = JSONResponse(
                    error_body(exc.message), status_code=401, headers=unauthenticated_headers()
                )
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})[OWNER_STATE_KEY] = owner
        try:
            body = await self._read_body(headers, receive)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        except TimeoutError:
            await self._too_slow(scope, receive, send)
            return
        if body is None:  # the client went away before sending its body
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        announced = headers.get("content-length", "")
        if announced.isdigit() and int(announced) > self.max_body_bytes:
            raise _TooLarge
        body = bytearray()
        while True:
            async with deadline(self.body_pause_s):  # cheaper than asyncio.timeout
                message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise _TooLarge
            if not message.get("more_body", False):
                return bytes(body)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        problem = FieldError("body", f"is larger than the limit of {limit} bytes")
        response = JSONResponse(
            error_body(f"request body too large: {problem}", [problem]), status_code=413
        )
        await response(scope, receive, send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = FieldError("body", f"stopped arriving for {self.body_pause_s:g}s")
        response = JSONResponse(
            error_body(f"request timed out: {problem}", [problem]),
            status_code=408,
            headers={"connection": "close"},  # the rest of the body may never come
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the buffered body, then passes through (disconnects)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
