"""keep_collections_short (runtime/gc_pacing.py): long-lived objects are moved out of the
collector's scans every period, and unfrozen for one full collection every full period."""

from __future__ import annotations

import asyncio
import gc

import pytest

from llm_launch.runtime.gc_pacing import keep_collections_short


async def run_briefly(**periods: float) -> None:
    task = asyncio.create_task(keep_collections_short(**periods))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_objects_alive_are_frozen_every_period() -> None:
    gc.unfreeze()
    try:
        await run_briefly(freeze_every_s=0.01, full_every_s=3600)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_a_full_collection_comes_with_unfreezing_once_a_full_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full: list[bool] = []
    collect = gc.collect

    def counted(generation: int = 2) -> int:
        full.append(generation == 2)
        return collect(generation)

    monkeypatch.setattr(gc, "collect", counted)
    try:
        await run_briefly(freeze_every_s=0.01, full_every_s=3600)
        assert full and not any(full)  # young collections only
        full.clear()
        await run_briefly(freeze_every_s=0.01, full_every_s=0)
        assert any(full)
        assert gc.get_freeze_count() > 0  # frozen again after the full collection
    finally:
        gc.unfreeze()
