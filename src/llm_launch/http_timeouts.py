"""The HTTP protocol of both llm-launch servers: uvicorn's httptools protocol with a
header-read timeout, which uvicorn has none of, and a leaner request cycle.

Used by the control plane (`llm-launch serve`, `llm-launch gateway`, see `api.wiring`) and
the forwarder beside each engine (`runtime.forwarder`). Without the header timeout a
client that sends its request head one byte at a time, or opens a connection and sends
nothing, holds that connection (and its file descriptor) for ever: uvicorn's keep-alive
timeout only runs between requests and is disarmed by the first byte of the next one.

`header_timeout_protocol(seconds)` returns the protocol class with that deadline: from
the moment a connection opens, and from the first byte of each further request on it,
the request head (request line and headers) must be complete within `seconds`, or the
connection is closed. What happens after the head (reading the body, the app's own time)
is not limited here. Between requests the keep-alive timeout applies, as in uvicorn; both
waits run on the shared watchdog of `runtime.deadlines`, not on a loop timer per request.

Every request's cycle is `http_response.CoalescingCycle` (a response's head leaves in the
same write as its body). `quiet_paths`: requests to these paths get no access-log line
whatever the log level (the inference routes: a line per completion would cost more CPU
than the rest of the hop's Python, and fill the log at the default level), while the
control-plane API's requests keep theirs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import urllib.parse
from collections.abc import Iterable
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from llm_launch.http_response import CoalescingCycle
from llm_launch.runtime.deadlines import unwatch, watch

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_TIMEOUT_S",
    "HeaderTimeoutProtocol",
    "header_timeout_protocol",
]

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5  # uvicorn's own default; whole seconds, as uvicorn takes it

log = logging.getLogger("llm_launch.http")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head is late."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    quiet_paths: frozenset[str] = frozenset()
    _waiting = False  # watched: waiting for a request's first byte, or for its head
    when = 0.0  # loop time by which the wait must be over

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    # httptools parser callbacks: a request begins with its first byte; its head ends
    # when the headers are complete (the body, if any, follows).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._wait(self.header_timeout_s)  # replaces the keep-alive wait, if one runs

    def on_headers_complete(self) -> None:
        """uvicorn's, with the cycle that writes a response's head with its body
        (`http_response.CoalescingCycle`), and no access-log line for `quiet_paths`."""
        self._stop_waiting()
        parser, scope = self.parser, self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return  # a WebSocket: uvicorn's protocol takes it over (data_received)
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        scope["raw_path"] = self.root_path.encode("ascii") + url.path
        scope["query_string"] = url.query or b""
        app = self.app
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self.logger.warning("Exceeded concurrency limit.")
            app = service_unavailable
        previous = self.cycle
        self.cycle = CoalescingCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log and scope["path"] not in self.quiet_paths,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if previous is None or previous.response_complete:
            self._run(self.cycle, app)
        else:  # pipelined: runs when the one before it has answered
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait for the next request on the watchdog below
        instead of a loop timer armed after every response and cancelled by the next
        request's first byte."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._run(cycle, app)
        else:
            self._wait(self.timeout_keep_alive)

    def _run(self, cycle: RequestResponseCycle, app: Any) -> None:
        """The request's task, counted in the server's tasks (what a shutdown waits for).
        Not uvicorn's `_start_asgi_task`, which older uvicorn releases lack: the forwarder
        runs in an engine image's interpreter, on whatever uvicorn the engine brought."""
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # Both waits (a request's first byte after a response, keep-alive; its head after
    # that, the header timeout) are this protocol itself (`when`, `expire`), watched by
    # the shared watchdog of runtime/deadlines.py rather than loop timers armed and
    # cancelled for every request: a few µs less per request, on the hot path of both
    # servers. A wait that is over late by up to the watchdog's tick closes no later.
    def _wait(self, seconds: float) -> None:
        self.when = self.loop.time() + seconds
        if not self._waiting:
            self._waiting = True
            watch(self.loop, self)

    def _stop_waiting(self) -> None:
        if self._waiting:
            unwatch(self.loop, self)
            self._waiting = False

    def expire(self) -> None:
        """The wait is over (the watchdog calls this): close the connection."""
        self._waiting = False
        if not self.transport.is_closing():
            log.debug("closing a connection: no request, or no request head, in time")
            self.transport.close()


def header_timeout_protocol(
    header_timeout_s: float, quiet_paths: Iterable[str] = ()
) -> type[HeaderTimeoutProtocol]:
    """The protocol class to pass as uvicorn's `http=`, with this header timeout, and no
    access-log line for requests to `quiet_paths`."""
    if header_timeout_s <= 0:
        raise ValueError(f"the header timeout must be positive, got {header_timeout_s}")
    check_uvicorn()
    return type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": float(header_timeout_s), "quiet_paths": frozenset(quiet_paths)},
    )


# What `on_headers_complete` hands uvicorn's request cycle (stable across uvicorn releases
# since 0.1x; checked at start, since the forwarder runs on the engine image's uvicorn).
CYCLE_ARGUMENTS = frozenset(
    {"scope", "transport", "flow", "logger", "access_logger", "access_log", "default_headers",
     "message_event", "expect_100_continue", "keep_alive", "on_response"}
)  # fmt: skip


def check_uvicorn() -> None:
    """Refuse to start, naming the version, on a uvicorn whose request cycle takes other
    arguments than the ones this protocol passes (rather than fail every request)."""
    taken = set(inspect.signature(CoalescingCycle.__init__).parameters) - {"self"}
    if taken != CYCLE_ARGUMENTS:
        raise RuntimeError(
            f"uvicorn {uvicorn.__version__} is not supported by llm-launch's HTTP protocol: "
            f"its request cycle takes {sorted(taken)}, not {sorted(CYCLE_ARGUMENTS)}"
        )
