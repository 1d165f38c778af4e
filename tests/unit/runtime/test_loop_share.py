"""LoopShare (runtime/loop_share.py): tasks sharing one slice of the event loop go on
without suspending while it lasts, and all wait for the loop's next turn once it is spent."""

from __future__ import annotations

import asyncio

from llm_launch.runtime.loop_share import LoopShare


async def ticks_during(work: object) -> int:
    """How many times another task ran while `work` (an awaitable) ran."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    await work  # type: ignore[misc]
    ticker.cancel()
    return ticks - before


async def test_while_the_slice_lasts_a_turn_does_not_suspend() -> None:
    share = LoopShare(slice_s=3600)

    async def work() -> None:
        for _ in range(100):
            await share.turn()

    assert await ticks_during(work()) == 0


async def test_once_the_slice_is_spent_every_worker_waits_for_the_next_turn() -> None:
    share = LoopShare(slice_s=0)
    order: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(3):
            order.append(name)
            await share.turn()

    async def other() -> None:
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    await asyncio.gather(worker("a"), worker("b"), other())

    # Between two units of one worker, the other task had its turn.
    runs = "".join("w" if entry != "other" else "|" for entry in order).split("|")
    assert max(len(run) for run in runs) <= 2  # one unit per worker per turn


async def test_a_cancelled_waiter_leaves_the_others_going() -> None:
    share = LoopShare(slice_s=0)
    cancelled = asyncio.create_task(share.turn())
    kept = asyncio.create_task(share.turn())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(kept, timeout=5)
    assert cancelled.cancelled()
