"""Per-request time limits at a fraction of `asyncio.timeout`'s cost.

The inference hop bounds every wait on the network: the body's arrival
(`api.guard.RequestGuard`), the answer's start and each pause between streamed chunks
(`services.inference`). That is four limits per completion. `asyncio.timeout` arms a
loop timer for each and cancels it on the way out: measured under uvloop here, 11-22 µs
per use, so 40-90 µs of the hop's ~250 µs of CPU per request went to limits that almost
never fire. `deadline(seconds)` costs ~2 µs: it records the deadline in a per-loop
registry, and one watchdog timer per event loop, armed only while some deadline is
registered, expires those past due every TICK_S. A limit therefore fires up to TICK_S
late, which no caller here can tell from on time (the shortest is the tests' 0.5 s).

Semantics are `asyncio.timeout`'s (Python 3.11, asyncio/timeouts.py): an expired deadline
cancels the task, and leaving the block turns that cancellation (and only that one, not
one from elsewhere, such as a client that left) into TimeoutError.

The same watchdog serves other per-request timers that almost never fire, through
`watch`/`unwatch` of any object with a `when` (loop time) and an `expire()`: the request
head's deadline (`http_timeouts`) and the start of a client watch (`client_watch`).
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Protocol

__all__ = ["TICK_S", "Deadline", "Expiring", "deadline", "unwatch", "watch"]

TICK_S = 0.05  # how often the watchdog looks; a deadline fires at most this late

_PENDING, _EXPIRING, _EXPIRED, _DONE = range(4)


class Expiring(Protocol):
    """What the watchdog expires: `expire()` is called once loop time passes `when`."""

    @property
    def when(self) -> float: ...

    def expire(self) -> None: ...


class _Watchdog:
    """The registered entries of one event loop, and the timer that expires them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.active: dict[Expiring, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, entry: Expiring) -> None:
        self.active[entry] = None
        if self._timer is None:
            self._timer = self.loop.call_later(TICK_S, self._tick)

    def remove(self, entry: Expiring) -> None:
        self.active.pop(entry, None)

    def _tick(self) -> None:
        now = self.loop.time()
        for entry in [e for e in self.active if e.when <= now]:
            del self.active[entry]
            entry.expire()
        # Sleep while nothing is registered: an idle process wakes for nothing.
        self._timer = self.loop.call_later(TICK_S, self._tick) if self.active else None


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
    weakref.WeakKeyDictionary()
)


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    watchdog = _watchdogs.get(loop)
    if watchdog is None:
        watchdog = _watchdogs[loop] = _Watchdog(loop)
    return watchdog


def watch(loop: asyncio.AbstractEventLoop, entry: Expiring) -> None:
    """Call `entry.expire()` once `loop`'s time passes `entry.when` (up to TICK_S late),
    unless `unwatch`ed first. The entry is looked at as it is then: moving `when`
    later postpones it."""
    _watchdog(loop).add(entry)


def unwatch(loop: asyncio.AbstractEventLoop, entry: Expiring) -> None:
    """No `expire()` for `entry` after this (a no-op if it expired or was never watched)."""
    watchdog = _watchdogs.get(loop)
    if watchdog is not None:
        watchdog.remove(entry)


class Deadline:
    """`async with deadline(s):` the block's task is cancelled once `s` seconds have
    passed, and the block raises TimeoutError; see the module docstring."""

    __slots__ = ("_cancelling", "_state", "_task", "_watchdog", "delay", "when")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.when = 0.0
        self._state = _PENDING

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        loop = asyncio.get_running_loop()
        watchdog = _watchdog(loop)
        self._task, self._watchdog = task, watchdog
        self._cancelling = task.cancelling()
        self.when = loop.time() + self.delay
        watchdog.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._watchdog.remove(self)
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
        else:
            self._state = _DONE

    def expire(self) -> None:
        """Called by the watchdog once `when` has passed, while the block still runs."""
        if self._state == _PENDING:
            self._state = _EXPIRING
            self._task.cancel()

    def expired(self) -> bool:
        return self._state in (_EXPIRING, _EXPIRED)


def deadline(delay: float) -> Deadline:
    """A limit of `delay` seconds on the `async with` block (as `asyncio.timeout(delay)`)."""
    return Deadline(delay)
