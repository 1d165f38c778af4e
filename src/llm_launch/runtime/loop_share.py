"""A bound on how long many tasks' CPU-bound work holds the event loop between two turns.

Used by the reconciler (services/reconciler.py), whose workers go through thousands of
endpoints that mostly need nothing written, so never suspend, on the event loop `serve`'s
inference routes share. Each worker calls `turn()` after each endpoint: while the shared
slice lasts it returns at once; once SLICE_S of the loop has gone since the last turn, the
caller and every worker after it wait until the loop has gone round (I/O polled, other
callbacks run), then they all go on with a fresh slice. Yielding every N endpoints per
worker instead let 64 workers hold the loop for 64 x N endpoints per turn, however long
those took; a slice bounds it in time, whatever the workers' count.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SLICE_S", "LoopShare"]

SLICE_S = 0.001  # the loop held at most this long, plus one unit per waiting task


class LoopShare:
    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self._since = time.perf_counter()
        self._waiting: list[asyncio.Future[None]] | None = None  # None: the slice lasts

    async def turn(self) -> None:
        """Return at once while the slice lasts; else after the event loop's next turn."""
        loop = asyncio.get_running_loop()
        if self._waiting is None:
            if time.perf_counter() - self._since < self.slice_s:
                return
            self._waiting = []
            loop.call_soon(self._release)  # runs in the loop's next turn, after its I/O
        future = loop.create_future()
        self._waiting.append(future)
        await future

    def _release(self) -> None:
        waiting, self._waiting = self._waiting or [], None
        self._since = time.perf_counter()
        for future in waiting:
            if not future.done():  # its task was cancelled meanwhile
                future.set_result(None)
