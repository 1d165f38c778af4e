"""Group commit of a reconciler's observations: one transaction for what its workers
observed meanwhile, not two per endpoint.

Used by `services/reconciler.py`. A worker hands its endpoint's writes to `write` and
waits for their outcome, as it waited for its own transaction before; the first write
starts a flush, and whatever the other workers hand in while a flush commits goes into
the next one (up to MAX_BATCH). So one endpoint alone is written at once, and a pass that
observes thousands of changes commits them a few dozen at a time: on SQLite, where each
commit takes the one write lock and a sync, a first pass over 10,000 endpoints went from
minutes of single-row transactions on serve's event loop to seconds
(bench/gateway_scaling.py). A failed flush fails the writes it carried, each worker
logging its own endpoint's; the next flush starts afresh.
"""

from __future__ import annotations

import asyncio

from llm_launch.store.observations import Observed, Recorded
from llm_launch.store.repository import EndpointRepository

__all__ = ["MAX_BATCH", "ObservationWriter"]

MAX_BATCH = 256  # endpoints a transaction writes: bounds how long it holds the lock


class ObservationWriter:
    def __init__(self, repository: EndpointRepository, max_batch: int = MAX_BATCH) -> None:
        self.repository = repository
        self.max_batch = max_batch
        self._pending: list[tuple[Observed, asyncio.Future[Recorded]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, observed: Observed) -> Recorded:
        """Write `observed` in the next flush; what was written, or its flush's error."""
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._pending.append((observed, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_all(), name="observation-writer")
        # Shielded: a worker that stops waiting (its pass cancelled) leaves the batch whole.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Stop: a flush under way is cancelled (its writes are observations, which the
        next reconciler makes again), and whoever waits on one is told so."""
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.wait({self._flushing})

    async def _flush_all(self) -> None:
        batch: list[tuple[Observed, asyncio.Future[Recorded]]] = []
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    results = await self.repository.record([observed for observed, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        _settle(future, exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        _settle(future, result)
        finally:
            self._flushing = None
            for _, future in batch + self._pending:  # cancelled: nobody writes these now
                future.cancel()
            self._pending.clear()


def _settle(future: asyncio.Future[Recorded], outcome: Recorded | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
        future.exception()  # its waiter may have gone (shielded): no "never retrieved" log
    else:
        future.set_result(outcome)
