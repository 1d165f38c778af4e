"""The forwarder's port to the engine: one request in, status + headers + body chunks out.

Called by the forwarder app (`runtime.forwarder.app`) and its readiness check
(`runtime.forwarder.ready`); the next hop is the engine, through one of two clients:

- `EnginePool` (`runtime.forwarder.transport`), the production client: pooled keep-alive
  HTTP/1.1 on asyncio protocols, no per-request objects beyond the response;
- `HttpxEngineClient` (here): any `httpx.AsyncBaseTransport`, so unit tests drive the app
  with `httpx.MockTransport` and no sockets.

Both raise httpx's transport errors (`httpx.ConnectError`, `ConnectTimeout`, `ReadError`,
`RemoteProtocolError`, all `httpx.TransportError`), which the app maps to 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpx

__all__ = ["EngineClient", "EngineResponse", "Headers", "HttpxEngineClient"]

Headers = list[tuple[bytes, bytes]]


class EngineResponse(Protocol):
    """An engine's answer whose body is read as it arrives."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as the engine sends it."""
        ...

    async def read(self) -> bytes:
        """The whole body."""
        ...

    async def aclose(self) -> None:
        """Release the connection (back to the pool when the body was fully read)."""
        ...


class EngineClient(Protocol):
    async def request(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> EngineResponse:
        """Send `method target` (path and query) with `body`; return once headers arrive.
        The client adds Host and Content-Length."""
        ...

    async def aclose(self) -> None: ...


class HttpxEngineClient:
    """An `EngineClient` over any httpx transport (tests pass `httpx.MockTransport`)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, engine_url: str) -> None:
        self._transport = transport
        self._base = engine_url.rstrip("/")

    async def request(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> EngineResponse:
        request = httpx.Request(method, self._base + target, headers=headers, content=body)
        return _HttpxResponse(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self._transport.aclose()


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Headers = list(response.headers.raw)

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for chunk in stream:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        await self._response.aclose()
