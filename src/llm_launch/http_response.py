"""The response half of both servers' HTTP protocol: a response's head goes out in the
same write as its first body part.

Used through `http_timeouts.HeaderTimeoutProtocol`, the uvicorn protocol of the control
plane (`serve`, `gateway`) and of the forwarder beside each engine. uvicorn's own cycle
writes the status line and headers as soon as the app sends `http.response.start`, then
each body part on its own: two `write` calls, so two TCP segments, for every completion.
On loopback and on a pod network the sender's `write` also pays for much of the
receiver's TCP work, and the receiver wakes twice; a profile of the routed path found
socket writes a third of each hop's CPU (bench/README.md, "The hop's CPU per request").

`CoalescingCycle` holds the head back until the app's next message: a body that follows
at once (every JSON answer: `respond` sends the start and the body back to back) leaves
with it, in one write; a head with nothing behind it yet (a stream waiting for its first
token) is written at the loop's next turn, so a client still sees the head of a slow
answer as soon as the app has decided it. Everything else is uvicorn's behaviour,
unchanged: the header checks, framing (Content-Length or chunked), keep-alive and
flow control.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

__all__ = ["CoalescingCycle"]


class CoalescingCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a response's head with its first body
    part (or, if none follows at once, at the loop's next turn)."""

    _head: bytes | None = None  # encoded, not yet written
    _flush: asyncio.Handle | None = None  # writes `_head` at the loop's next turn

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got '{message['type']}'.")
            self._start(message["status"], message.get("headers", ()))
        elif self.response_complete:
            raise RuntimeError(f"Unexpected '{message['type']}' after the response completed.")
        elif message["type"] != "http.response.body":
            raise RuntimeError(f"Expected 'http.response.body', got '{message['type']}'.")
        else:
            body: bytes = message.get("body", b"")
            self._body(body, bool(message.get("more_body", False)))

    def _start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        self._head = self._encode_head(status, [*self.default_headers, *headers])
        self._flush = asyncio.get_running_loop().call_soon(self._write_head)

    def _encode_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The status line and headers, setting the body's framing and keep-alive as
        uvicorn does."""
        content = [STATUS_LINE[status]]
        has_connection_close = False
        for raw_name, value in headers:
            if HEADER_RE.search(raw_name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = raw_name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                has_connection_close = True
            content.extend([name, b": ", value, b"\r\n"])
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)

    def _body(self, body: bytes, more_body: bool) -> None:
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = b""
        elif self.chunked_encoding:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = body
        head = self._take_head()
        if head is not None:
            # One write (writev where the loop has it), no copy of a large body.
            self.transport.writelines([head, data] if data else [head])
        elif data:
            self.transport.write(data)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _take_head(self) -> bytes | None:
        head, self._head = self._head, None
        if head is not None and self._flush is not None:
            self._flush.cancel()
        return head

    def _write_head(self) -> None:
        """Nothing followed the head at once (a stream, an app that awaits before its
        body, or one that failed): the client gets the head now."""
        head = self._take_head()
        if head is not None and not self.transport.is_closing():
            self.transport.write(head)
