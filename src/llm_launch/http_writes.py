"""One write for a response's head and body, where uvicorn makes two.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body with the next `http.response.body`: two `write`
calls, two TCP segments on a keep-alive connection, and for the reader (the API reading a
forwarder's answer, a client reading ours) often two wakeups. On the inference hops a
complete answer is sent as those two messages back to back, so the first is held for the
second: `CoalescingTransport` stands between uvicorn's HTTP protocol and the socket
(`http_timeouts.HeaderTimeoutProtocol` installs it on both of our servers) and, once told
a response begins (`expect_response`), holds that response's first write until either the
next write, which carries both, or the end of the current event-loop iteration, whatever
comes first: a streamed answer's head leaves at once, not with its first chunk, and no
write is reordered (every write of the connection goes through the same object).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescingTransport"]


class CoalescingTransport:
    """A transport that joins a response's first write with the one after it."""

    __slots__ = ("_armed", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._armed = False
        self._held: bytes | None = None

    def expect_response(self) -> None:
        """The next write begins a response (its head): hold it for the one after."""
        self._armed = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif self._armed:
            self._armed = False
            self._held = bytes(data)
            self._loop.call_soon(self.flush)  # at the latest when this iteration ends
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading flow control, extra info, set_protocol) is the socket's.
        return getattr(self._transport, name)
