"""`runtime.deadlines.deadline`: asyncio.timeout's behaviour, at a fraction of its cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

from llm_launch.runtime import deadlines
from llm_launch.runtime.deadlines import TICK_S, deadline

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[..., object]:
    def runner(coroutine: object) -> object:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as each:
            return each.run(coroutine)  # type: ignore[arg-type]

    return runner


def test_a_block_that_outlasts_its_deadline_raises_timeout_error(
    run: Callable[..., object],
) -> None:
    async def late() -> str:
        try:
            async with deadline(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "deadline"
        return "slept"

    # wait_for: a deadline that never fires fails the test (wait_for's own TimeoutError
    # escapes), never hangs it.
    assert run(asyncio.wait_for(late(), 4)) == "deadline"


def test_a_block_done_in_time_is_never_cancelled_afterwards(run: Callable[..., object]) -> None:
    async def quick() -> str:
        async with deadline(0.05) as limit:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05 + 3 * TICK_S)  # past the deadline: nothing may fire now
        assert not limit.expired()
        return "done"

    assert run(quick()) == "done"


def test_a_cancellation_from_elsewhere_stays_a_cancellation(run: Callable[..., object]) -> None:
    async def cancelled_by_another() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        async with deadline(60):
            await asyncio.sleep(5)

    async def main() -> str:
        try:
            await cancelled_by_another()
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"

    assert run(main()) == "cancelled"


def test_an_inner_deadline_expiring_leaves_the_outer_one_running(
    run: Callable[..., object],
) -> None:
    async def nested() -> str:
        async with deadline(60):
            with pytest.raises(TimeoutError):
                async with deadline(0.02):
                    await asyncio.sleep(5)
            await asyncio.sleep(0.01)  # the outer block goes on, uncancelled
            return "outer finished"

    assert run(nested()) == "outer finished"


def test_the_watchdog_sleeps_once_nothing_is_registered(run: Callable[..., object]) -> None:
    async def main() -> tuple[bool, bool]:
        async with deadline(60):
            watchdog = deadlines._watchdogs[asyncio.get_running_loop()]
            armed = watchdog._timer is not None
        await asyncio.sleep(2 * TICK_S)  # one more tick finds nothing and stops
        return armed, watchdog._timer is None

    assert run(main()) == (True, True)


def test_a_cancellation_arriving_with_the_expiry_stays_a_cancellation(
    run: Callable[..., object],
) -> None:
    """As asyncio.timeout: two cancel requests (the deadline's and another's) leave one
    pending after the block, so the block must not swallow it as a timeout."""

    async def both_at_once() -> None:
        task = asyncio.current_task()
        assert task is not None
        async with deadline(60) as limit:

            def expire_and_cancel() -> None:
                limit.expire()  # what the watchdog does when the deadline passes
                task.cancel()

            asyncio.get_running_loop().call_soon(expire_and_cancel)
            await asyncio.sleep(5)

    async def main() -> str:
        try:
            await both_at_once()
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timed out"
        return "neither"

    assert run(main()) == "cancelled"
