"""CoalescingCycle: a response's head leaves with its first body part, in one write, and
only a head with nothing behind it is written on its own (at the loop's next turn)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from llm_launch.http_response import CoalescingCycle


class RecordingTransport(asyncio.Transport):
    """What the cycle wrote, one entry per call (a `writelines` call is one write)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def make_cycle(
    method: str = "POST", keep_alive: bool = True
) -> tuple[CoalescingCycle, RecordingTransport]:
    transport = RecordingTransport()
    scope = {"type": "http", "method": method, "path": "/", "http_version": "1.1", "headers": []}
    cycle = CoalescingCycle(
        scope=scope,  # type: ignore[arg-type]
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return cycle, transport


def start(*headers: tuple[bytes, bytes], status: int = 200) -> Any:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def body(data: bytes, more: bool = False) -> Any:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def test_a_json_answer_is_one_write() -> None:
    cycle, transport = make_cycle()
    await cycle.send(start((b"content-type", b"application/json"), (b"content-length", b"2")))
    await cycle.send(body(b"{}"))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    ]
    await asyncio.sleep(0)  # the head's own write, cancelled, never comes
    assert len(transport.writes) == 1
    assert cycle.response_complete


async def test_a_head_with_nothing_behind_it_goes_out_at_the_next_turn() -> None:
    cycle, transport = make_cycle()
    await cycle.send(start((b"content-type", b"text/event-stream")))
    assert transport.writes == []
    await asyncio.sleep(0)  # a stream waiting for its first token: the client sees the head
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    ]
    await cycle.send(body(b"data: 1\n\n", more=True))
    await cycle.send(body(b""))
    assert transport.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]


async def test_a_head_answer_writes_the_head_alone() -> None:
    cycle, transport = make_cycle(method="HEAD")
    await cycle.send(start((b"content-length", b"5")))
    await cycle.send(body(b""))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]


async def test_connection_close_is_written_and_the_connection_closes() -> None:
    cycle, transport = make_cycle(keep_alive=False)
    await cycle.send(start((b"content-length", b"2")))
    await cycle.send(body(b"ok"))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    ]
    assert transport.closed


async def test_an_app_that_fails_after_its_start_leaves_no_head_on_a_closed_connection() -> None:
    cycle, transport = make_cycle()
    await cycle.send(start((b"content-length", b"2")))
    transport.close()  # what uvicorn's run_asgi does when the app raises after starting
    await asyncio.sleep(0)
    assert transport.writes == []


@pytest.mark.parametrize(
    ("header", "message"),
    [((b"x-bad", b"a\r\nb"), "header value"), ((b"x bad", b"v"), "header name")],
)
async def test_header_injection_is_refused(header: tuple[bytes, bytes], message: str) -> None:
    cycle, transport = make_cycle()
    with pytest.raises(RuntimeError, match=message):
        await cycle.send(start(header))
    assert transport.writes == []


async def test_a_body_longer_or_shorter_than_its_content_length_is_an_error() -> None:
    cycle, _ = make_cycle()
    await cycle.send(start((b"content-length", b"2")))
    with pytest.raises(RuntimeError, match="longer"):
        await cycle.send(body(b"abc"))
    cycle, _ = make_cycle()
    await cycle.send(start((b"content-length", b"2")))
    with pytest.raises(RuntimeError, match="shorter"):
        await cycle.send(body(b"a"))
