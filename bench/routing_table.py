"""Cost and freshness of the inference routes' in-memory routing table (services/routing_table.py).

Fills a fresh SQLite database with N endpoints (through the repository), then measures:

- a full refresh with nothing changed, and one after K status writes by "another replica"
  (wall time, and CPU time of the event loop's thread: what a refresh takes from inference);
- how long after another replica's delete (or recorded failure) the table stops routing to
  the endpoint: the table refreshes every REFRESH_S in the background while deletes happen
  at random moments, and a 1 ms poll notes when the lookup answers NotFound (or the status).

    .venv/bin/python bench/routing_table.py [--endpoints 10000] [--deletes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.ext.asyncio import AsyncEngine
from tests.builders import endpoint_body

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import NotFound
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import REFRESH_S, RoutingTable
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository


async def seed(repository: EndpointRepository, count: int) -> None:
    catalog = load_hardware_catalog()
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with semaphore:
            await repository.create(
                f"owner{i % 100}", build_spec(endpoint_body(name=f"e-{i:05d}"), catalog)
            )

    await asyncio.gather(*(one(i) for i in range(count)))


async def timed_refresh(table: RoutingTable) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    await table.refresh()
    return time.perf_counter() - wall, time.thread_time() - cpu


async def refresh_costs(repository: EndpointRepository, count: int, changes: int) -> None:
    table = RoutingTable(repository)
    first = await timed_refresh(table)
    steady = [await timed_refresh(table) for _ in range(5)]
    changed = []
    rows = list(table._by_id.values())
    for _ in range(5):
        for endpoint in random.sample(rows, changes):
            await repository.set_status(endpoint.id, EndpointStatus.READY, f"r{random.random()}")
        changed.append(await timed_refresh(table))
    print(f"{count} endpoints stored, {len(table)} in the table")
    print(f"{'refresh':38} {'wall ms':>9} {'loop CPU ms':>12}")
    for label, samples in (
        ("first (every row read in full)", [first]),
        ("steady, nothing changed (median of 5)", steady),
        (f"after {changes} status writes (median of 5)", changed),
    ):
        wall = statistics.median(s[0] for s in samples) * 1000
        cpu = statistics.median(s[1] for s in samples) * 1000
        print(f"{label:38} {wall:9.1f} {cpu:12.1f}")


async def until(check: object, start: float) -> float:
    while not check():  # type: ignore[operator]  # noqa: ASYNC110 (a poll is what is measured)
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def freshness(repository: EndpointRepository, engine: AsyncEngine, deletes: int) -> None:
    """Delay from another replica's write to the table's answer, with the refresh loop on."""
    table = RoutingTable(repository)
    await table.refresh()
    refreshing = asyncio.create_task(table.run_forever())
    other = EndpointRepository(engine)  # another replica's writes: the same database
    gone, failed = [], []
    try:
        victims = random.sample(list(table._by_id.values()), deletes * 2)
        for endpoint in victims[:deletes]:
            await asyncio.sleep(random.uniform(0, REFRESH_S))
            start = time.perf_counter()
            await other.mark_deleting(endpoint)
            gone.append(await until(lambda e=endpoint: _missing(table, e), start))
        for endpoint in victims[deletes:]:
            await asyncio.sleep(random.uniform(0, REFRESH_S))
            start = time.perf_counter()
            await other.set_status(endpoint.id, EndpointStatus.UPDATE_FAILED, "engine crashed")
            failed.append(await until(lambda e=endpoint: _failed(table, e), start))
    finally:
        refreshing.cancel()
    print(f"refresh every {REFRESH_S:g} s; delay from another replica's write to the table")
    for label, delays in (("delete -> 404", gone), ("failure -> 503 naming it", failed)):
        print(
            f"  {label:26} median {statistics.median(delays) * 1000:6.0f} ms, "
            f"max {max(delays) * 1000:6.0f} ms over {len(delays)}"
        )


def _missing(table: RoutingTable, endpoint: object) -> bool:
    try:
        table.lookup(endpoint.owner, endpoint.name)  # type: ignore[attr-defined]
    except NotFound:
        return True
    return False


def _failed(table: RoutingTable, endpoint: object) -> bool:
    found = table.lookup(endpoint.owner, endpoint.name)  # type: ignore[attr-defined]
    return found.status is EndpointStatus.UPDATE_FAILED


async def run(url: str, count: int, changes: int, deletes: int) -> None:
    engine = open_database(url)
    repository = EndpointRepository(engine)
    try:
        await seed(repository, count)
        await refresh_costs(repository, count, changes)
        await freshness(repository, engine, deletes)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--deletes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.endpoints, args.changes, args.deletes))


if __name__ == "__main__":
    main()
