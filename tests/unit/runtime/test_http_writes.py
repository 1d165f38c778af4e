"""`http_writes.CoalescingTransport`: a response's head leaves with its body in one write,
or alone once the event-loop iteration ends; nothing is reordered or lost."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from llm_launch import http_timeouts
from llm_launch.http_writes import CoalescingTransport
from tests.support.server import free_port


class Socket:
    """A transport that records each write (what the kernel would get as one send)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def coalescing() -> tuple[CoalescingTransport, Socket]:
    socket = Socket()
    return CoalescingTransport(socket, asyncio.get_running_loop()), socket  # type: ignore[arg-type]


def test_a_head_and_its_body_sent_back_to_back_leave_in_one_write() -> None:
    async def main() -> list[bytes]:
        transport, socket = coalescing()
        transport.expect_response()
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        await asyncio.sleep(0)
        return socket.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


def test_a_head_with_no_body_yet_leaves_when_the_iteration_ends() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        transport, socket = coalescing()
        transport.expect_response()
        transport.write(b"head")
        held = list(socket.writes)
        await asyncio.sleep(0)  # a streamed answer's head must not wait for its first chunk
        return held, socket.writes

    assert asyncio.run(main()) == ([], [b"head"])


def test_only_a_responses_first_write_is_held() -> None:
    async def main() -> list[bytes]:
        transport, socket = coalescing()
        transport.write(b"not armed")  # no response announced: straight through
        transport.expect_response()
        transport.write(b"head")
        transport.write(b"chunk 1")
        transport.write(b"chunk 2")  # after the pair: straight through, in order
        await asyncio.sleep(0)
        return socket.writes

    assert asyncio.run(main()) == [b"not armed", b"headchunk 1", b"chunk 2"]


def test_close_sends_a_held_head_first_and_abort_drops_it() -> None:
    async def main() -> tuple[list[bytes], bool, list[bytes], bool]:
        closed, socket = coalescing()
        closed.expect_response()
        closed.write(b"head")
        closed.close()
        aborted, other = coalescing()
        aborted.expect_response()
        aborted.write(b"head")
        aborted.abort()
        await asyncio.sleep(0)  # the scheduled flush finds the socket closing: no write
        return socket.writes, socket.closing, other.writes, other.aborted

    assert asyncio.run(main()) == ([b"head"], True, [], True)


def test_anything_else_is_the_sockets() -> None:
    async def main() -> str:
        transport, _ = coalescing()
        return transport.get_extra_info("peername")  # type: ignore[no-any-return]

    assert asyncio.run(main()) == "info:peername"


class Recording:
    """The real socket transport, with its writes counted."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def test_our_servers_send_a_complete_answer_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []

    def recorded(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> object:
        return CoalescingTransport(Recording(transport, writes), loop)  # type: ignore[arg-type]

    monkeypatch.setattr(http_timeouts, "CoalescingTransport", recorded)

    async def answer(scope: dict[str, object], receive: object, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    port = free_port()
    config = uvicorn.Config(
        answer, host="127.0.0.1", port=port, lifespan="off", log_config=None,
        http=http_timeouts.header_timeout_protocol(5.0),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert [http.get("/").text for _ in range(3)] == ["hello"] * 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    assert len(writes) == 3, writes  # one per answer: its head and body together
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"hello") for w in writes)
