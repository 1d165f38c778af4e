"""Cancel a request's work when its client leaves: the forwarder and the API's inference
routes both use it, so an abandoned request stops at every hop (the engine included).

A client that closes its connection shows up as an `http.disconnect` message on the ASGI
`receive` channel, once the request body has been read. Watching for it costs a task per
request, so the watch starts only once a request has run WATCH_AFTER_S: requests that
finish sooner (nothing worth stopping upstream) never pay for it.
"""

from __future__ import annotations

import asyncio

from llm_launch.runtime.deadlines import unwatch, watch
from llm_launch.runtime.forwarder.asgi import Message, Receive, Send

__all__ = ["WATCH_AFTER_S", "ClientWatch"]

# A request running this long (plus up to the watchdog's TICK_S) starts watching for its
# client leaving.
WATCH_AFTER_S = 0.02


class ClientWatch:
    """One request's link to its client: notices the client leaving before the answer is
    complete, and then cancels the request's task (whose upstream connection closes: the
    next hop stops too). The task catches the cancellation, sees `disconnected`, and calls
    `uncancel()`; `close()` ends the watch, always.

    Watching costs a task per request, about a tenth of the forwarder's CPU per request;
    it starts only once the request has run WATCH_AFTER_S, so the requests that finish
    sooner (nothing worth stopping on the engine) never pay for it.
    """

    def __init__(self, receive: Receive, send: Send | None = None) -> None:
        self._send = send
        self._receive = receive
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.done = False
        self.disconnected = False
        self._watcher: asyncio.Task[None] | None = None
        # Through the shared watchdog (runtime/deadlines.py), not a loop timer of its own:
        # most requests end before it and would pay to arm and cancel a timer for nothing.
        self._loop = asyncio.get_running_loop()
        self.when = self._loop.time() + WATCH_AFTER_S
        watch(self._loop, self)

    async def send(self, message: Message) -> None:
        """The request's `send`, through which the watch learns the answer is complete."""
        assert self._send is not None
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.done = True
        await self._send(message)

    def close(self) -> None:
        unwatch(self._loop, self)
        if self._watcher is not None:
            self._watcher.cancel()

    def expire(self) -> None:
        """The request has run WATCH_AFTER_S (the watchdog calls this): start watching."""
        self._watcher = asyncio.ensure_future(self._until_disconnect())

    async def _until_disconnect(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self.done:
                    self.disconnected = True
                    self.task.cancel()
                return
