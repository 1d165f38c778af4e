"""Short pauses of the cyclic garbage collector in a server holding many endpoints.

Started by `serve` (api/app.py) as a lifespan task. With 10,000 endpoints the process holds
about a million long-lived objects (specs, routing entries, local runtimes), and every
full collection scans them all: 150 ms with the event loop stopped, measured on one
`list_all` of 10,000 endpoints (gc.callbacks), every few reconciler passes, which showed
as the p99 of the inference routes `serve` runs on the same loop (bench/gateway_scaling.py).

So every FREEZE_EVERY_S the objects that survived so far go to the collector's permanent
generation (`gc.freeze`, CPython's documented way to keep long-lived objects out of its
scans), after a young collection (cheap) has removed the young garbage. Frozen objects are
still freed when no longer referenced; only cyclic garbage frozen alive-or-not is kept,
so once every FULL_EVERY_S they are unfrozen and one full collection frees it: one long
pause an hour instead of one every few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import time

__all__ = ["FREEZE_EVERY_S", "FULL_EVERY_S", "keep_collections_short"]

FREEZE_EVERY_S = 10.0
FULL_EVERY_S = 3600.0


async def keep_collections_short(
    freeze_every_s: float = FREEZE_EVERY_S, full_every_s: float = FULL_EVERY_S
) -> None:
    """Run for as long as the server does."""
    last_full = time.monotonic()
    while True:
        if time.monotonic() - last_full >= full_every_s:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        gc.collect(1)
        gc.freeze()  # at once too: what the server loaded at start (its routing table)
        await asyncio.sleep(freeze_every_s)
