"""The forwarder's pooled engine client over real loopback sockets, against scripted servers:
keep-alive reuse, stale connections, body framings, failures and cancellation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from llm_launch.runtime.forwarder.transport import EnginePool
from tests.support.server import free_port

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
WAIT_S = 10.0


class Server:
    """A loopback server running `script` for each connection; counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        finally:
            writer.close()
            self.closed.set()

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's head (and its body, when it has a Content-Length); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@asynccontextmanager
async def serving(script: Callable[[Server], Script]) -> AsyncIterator[tuple[Server, EnginePool]]:
    server = Server(lambda r, w: script(server)(r, w))
    port = free_port()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port)
    pool = EnginePool("127.0.0.1", port, connect_timeout=WAIT_S)
    try:
        yield server, pool
    finally:
        await pool.aclose()
        listener.close()


def keep_alive(answer: bytes = OK) -> Callable[[Server], Script]:
    def script(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.request(reader) is not None:
                writer.write(answer)
                await writer.drain()

        return run

    return script


async def get(pool: EnginePool, target: str = "/x", body: bytes = b"") -> tuple[int, bytes]:
    response = await pool.request("POST", target, [(b"content-type", b"text/plain")], body)
    try:
        return response.status, await response.read()
    finally:
        await response.aclose()


async def test_sequential_requests_share_one_connection() -> None:
    async with serving(keep_alive()) as (server, pool):
        assert [await get(pool) for _ in range(3)] == [(200, b"{}")] * 3
    assert server.connections == 1


async def test_the_request_carries_host_length_headers_and_body() -> None:
    async with serving(keep_alive()) as (server, pool):
        await get(pool, "/v1/models?x=1", b"hello")
    request = server.requests[0]
    assert request.startswith(b"POST /v1/models?x=1 HTTP/1.1\r\n")
    assert b"Host: 127.0.0.1:" in request and b"Content-Length: 5\r\n" in request
    assert b"content-type: text/plain\r\n" in request and request.endswith(b"\r\n\r\nhello")


async def test_a_connection_the_engine_closed_while_idle_is_replaced() -> None:
    def one_answer_per_connection(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            writer.write(OK)  # keep-alive as far as the client knows, then gone
            await writer.drain()

        return run

    async with serving(one_answer_per_connection) as (server, pool):
        for _ in range(3):
            assert await get(pool) == (200, b"{}")
            await server.closed.wait()
            server.closed.clear()
    assert server.connections == 3


async def test_a_chunked_body_arrives_piece_by_piece_as_sent() -> None:
    second = asyncio.Event()

    def chunked(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await second.wait()  # the client must see the first piece before this one exists
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

        return run

    async with serving(chunked) as (_, pool):
        response = await pool.request("GET", "/s", [], b"")
        pieces = response.chunks()
        assert await anext(pieces) == b"first"
        second.set()
        assert [piece async for piece in pieces] == [b"second"]
        await response.aclose()


async def test_a_body_delimited_by_the_end_of_the_connection_is_read_whole() -> None:
    def until_eof(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

        return run

    async with serving(until_eof) as (server, pool):
        assert await get(pool) == (200, b"all of it")
        assert await get(pool) == (200, b"all of it")
    assert server.connections == 2


async def test_an_engine_that_dies_mid_body_is_a_read_error() -> None:
    def dies(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

        return run

    async with serving(dies) as (_, pool):
        with pytest.raises(httpx.ReadError, match="mid-response"):
            await get(pool)


async def test_an_engine_that_answers_garbage_is_a_protocol_error() -> None:
    async with serving(keep_alive(b"SMTP ready\r\n\r\n")) as (_, pool):
        with pytest.raises(httpx.RemoteProtocolError):
            await get(pool)


async def test_an_engine_that_closes_without_answering_is_a_protocol_error() -> None:
    def hangs_up(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)

        return run

    async with serving(hangs_up) as (server, pool):
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await get(pool)
    assert server.connections == 1  # a fresh connection is not retried


async def test_nothing_listening_is_a_connect_error_at_once() -> None:
    pool = EnginePool("127.0.0.1", free_port(), connect_timeout=WAIT_S)
    with pytest.raises(httpx.ConnectError, match="cannot connect"):
        await asyncio.wait_for(get(pool), timeout=WAIT_S)


async def test_cancelling_a_request_closes_its_connection() -> None:
    request_seen = asyncio.Event()

    def never_answers(server: Server) -> Script:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            request_seen.set()
            await reader.read()  # returns at EOF: the client closed the connection

        return run

    async with serving(never_answers) as (server, pool):
        waiting = asyncio.create_task(get(pool))
        await request_seen.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(server.closed.wait(), timeout=WAIT_S)


async def test_an_abandoned_body_closes_the_connection_instead_of_reusing_it() -> None:
    async with serving(keep_alive(OK[:-2] + b"")) as (server, pool):  # body never completes
        response = await pool.request("GET", "/", [], b"")
        await response.aclose()
        await asyncio.wait_for(server.closed.wait(), timeout=WAIT_S)
        assert pool._idle == []


async def test_connections_idle_past_their_expiry_are_not_reused() -> None:
    async with serving(keep_alive()) as (server, pool):
        pool._keepalive_expiry = 0.0
        await get(pool)
        await get(pool)
    assert server.connections == 2


async def test_an_ipv6_engine_is_reached_with_a_bracketed_host_header() -> None:
    server = Server(lambda r, w: keep_alive()(server)(r, w))
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    listener = await asyncio.start_server(server.handle, "::1", port)
    pool = EnginePool("::1", port, connect_timeout=WAIT_S)
    try:
        assert await get(pool) == (200, b"{}")
    finally:
        await pool.aclose()
        listener.close()
    assert f"Host: [::1]:{port}\r\n".encode() in server.requests[0]
