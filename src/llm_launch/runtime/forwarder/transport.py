"""A keep-alive HTTP/1.1 connection pool to one engine: the forwarder's production client.

Called by the forwarder app (`runtime.forwarder.app`, through the `EngineClient` port of
`runtime.forwarder.client`) for every request it sends to the engine; its next hop is the
engine's HTTP port (SGLang or vLLM, `--engine-url`).

Why not `httpx.AsyncClient`: httpcore + h11 + anyio, and httpx's request and header
objects, cost about 400 µs of CPU per request on our 2-core machines, twice the
forwarder's whole budget (DESIGN.md section 5). This pool speaks plain HTTP/1.1 on asyncio
protocols with `httptools` (the C parser uvicorn[standard] already brings) and builds no
per-request objects besides the response: an order of magnitude less.

Scope, deliberately narrow: one upstream, plain HTTP, request bodies as bytes, no proxies,
no redirects, one request at a time per connection. Connect fails fast
(`connect_timeout`); reads have no timeout (generations may be long) and callers bound
them when they must (the readiness check does). Errors are httpx's own transport errors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

from llm_launch.runtime.forwarder.client import Headers

__all__ = ["EnginePool"]

HIGH_WATER = 256 * 1024  # pause reading the engine when this much is buffered, unconsumed
LOW_WATER = 64 * 1024


class _StaleConnection(Exception):
    """A reused keep-alive connection closed before any byte of the response arrived."""


class _Connection(asyncio.Protocol):
    """One TCP connection to the engine; carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.loop = asyncio.get_running_loop()
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self._received = False
        self._headers_done = False
        self._eof_delimited = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP from the engine: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete:
            return
        if self._headers_done and self._eof_delimited and exc is None:
            self.on_message_complete()  # a body delimited by the end of the connection
            self.keep_alive = False
        elif not self._received:
            self._fail(_StaleConnection())
        else:
            reason = f": {exc}" if exc else ""
            self._fail(httpx.ReadError(f"the engine closed the connection mid-response{reason}"))

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._headers_done = True
        names = {name.lower() for name, _ in self.headers}
        self._eof_delimited = b"content-length" not in names and b"transfer-encoding" not in names
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # --- used by the pool and the body stream -------------------------------------------

    async def send(self, head: bytes, body: bytes) -> None:
        """Write the request and wait for the response's status line and headers."""
        assert self.transport is not None
        self._reset()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        while not self._headers_done:
            await self._wait()

    async def wait_body(self) -> None:
        await self._wait()

    def consumed(self, size: int) -> None:
        self.buffered -= size
        if self._paused and self.buffered < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        except BaseException:
            self.close()  # cancelled mid-response: this connection cannot be reused
            raise
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()


class _Response:
    """One answer on one pooled connection; the connection goes back to the pool once the
    body was fully read, and is closed when the body is abandoned early."""

    def __init__(self, pool: EnginePool, connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers: Headers = connection.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        pending = connection.chunks
        while True:
            if pending:
                chunk = pending.popleft()
                connection.consumed(len(chunk))
                yield chunk
            elif connection.complete:
                break
            else:
                await connection.wait_body()
        await self.aclose()

    async def read(self) -> bytes:
        connection = self._connection
        if connection is not None and not connection.complete:
            return b"".join([chunk async for chunk in self.chunks()])
        body = b"".join(connection.chunks) if connection is not None else b""
        if connection is not None:
            connection.chunks.clear()
        await self.aclose()
        return body

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.complete and not connection.chunks and connection.keep_alive:
            self._pool.release(connection)
        else:
            connection.close()


class EnginePool:
    """Pooled keep-alive HTTP/1.1 to one engine at `host:port` (an `EngineClient`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 3.0,
        keepalive_expiry: float = 4.0,
        max_idle: int = 512,
    ) -> None:
        self._host = host
        self._port = port
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._host_header = b"Host: " + authority.encode() + b"\r\n"
        self._connect_timeout = connect_timeout
        # Under the engines' own keep-alive timeout (uvicorn: 5 s), so the engine is not
        # the one closing an idle connection just as we reuse it.
        self._keepalive_expiry = keepalive_expiry
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def request(self, method: str, target: str, headers: Headers, body: bytes) -> _Response:
        head = self._head(method, target, headers, len(body))
        for attempt in (1, 2):
            connection, reused = await self._acquire()
            try:
                await connection.send(head, body)
            except _StaleConnection:
                connection.close()
                if reused and attempt == 1:
                    continue  # the engine had closed it while idle: it never saw the request
                raise httpx.RemoteProtocolError(
                    "the engine closed the connection without answering"
                ) from None
            return _Response(self, connection)
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, target: str, headers: Headers, length: int) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), self._host_header]
        lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def release(self, connection: _Connection) -> None:
        if connection.closed or len(self._idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = connection.loop.time()
        self._idle.append(connection)

    async def _acquire(self) -> tuple[_Connection, bool]:
        if self._idle:
            oldest_allowed = asyncio.get_running_loop().time() - self._keepalive_expiry
            while self._idle:
                connection = self._idle.pop()
                if connection.usable() and connection.idle_since >= oldest_allowed:
                    return connection, True
                connection.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"the engine at {self._host}:{self._port}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            message = f"connecting to {where} took over {self._connect_timeout}s"
            raise httpx.ConnectTimeout(message) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}") from None
        return connection
