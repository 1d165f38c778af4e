"""Cost and freshness of the inference routes' in-memory routing table (services/routing_table.py).

Fills a fresh database with N endpoints (through the repository), then measures, over
interleaved rounds:

- a refresh with nothing changed, and one after K status writes by "another replica"
  (wall time, and CPU time of the event loop's thread: what a refresh takes from inference),
  following the change counter (store/revisions.py: the counter alone when idle, the
  changed rows otherwise) against the baseline, a full narrow read of every row (what
  every refresh did before the counter, and what one refresh in FULL_EVERY still does);
- how long after another replica's delete (or recorded failure) the table stops routing to
  the endpoint: the table refreshes every REFRESH_S in the background while deletes happen
  at random moments, and a 1 ms poll notes when the lookup answers NotFound (or the status).

    .venv/bin/python bench/routing_table.py [--endpoints 10000] [--deletes 10]
        [--rounds 5] [--database sqlite|postgres]
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
from tests.support.databases import fresh_postgres_database

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import NotFound
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import FULL_EVERY, REFRESH_S, RoutingTable
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository

Sample = tuple[float, float]  # (wall s, loop CPU s)


async def seed(repository: EndpointRepository, count: int) -> None:
    catalog = load_hardware_catalog()
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with semaphore:
            await repository.create(
                f"owner{i % 100}", build_spec(endpoint_body(name=f"e-{i:05d}"), catalog)
            )

    await asyncio.gather(*(one(i) for i in range(count)))


async def timed_refresh(table: RoutingTable) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    await table.refresh()
    return time.perf_counter() - wall, time.thread_time() - cpu


async def refresh_costs(
    repository: EndpointRepository, count: int, changes: int, rounds: int
) -> None:
    # The baseline reads every row at each refresh; the other follows the counter only
    # (its periodic full read is the baseline's cost, once in FULL_EVERY: shown apart).
    full = RoutingTable(repository, full_every=1)
    counter = RoutingTable(repository, full_every=10**9)
    first = await timed_refresh(full)
    await counter.refresh()
    samples: dict[str, list[Sample]] = {k: [] for k in ("full-idle", "ctr-idle", "full", "ctr")}
    rows = list(full._by_id.values())
    for i in range(rounds):  # interleaved, each side first in turn: one load spike, one round
        order = [(full, "full"), (counter, "ctr")][:: 1 if i % 2 else -1]
        for table, key in order:
            samples[f"{key}-idle"].append(await timed_refresh(table))
        for endpoint in random.sample(rows, changes):
            await repository.set_status(endpoint.id, EndpointStatus.READY, f"r{random.random()}")
        for table, key in order:
            samples[key].append(await timed_refresh(table))
    assert len(full) == len(counter) == count, (len(full), len(counter))
    assert full._by_id == counter._by_id  # the same table, read two ways
    print(f"{count} endpoints stored, {len(counter)} in the table; medians of {rounds} rounds")
    print(f"{'':42} {'full read (baseline)':>21} {'change counter':>21} {'CPU':>7}")
    print(
        f"{'refresh':42} {'wall ms':>10} {'CPU ms':>10} {'wall ms':>10} {'CPU ms':>10} {'ratio':>7}"
    )
    print(f"{'first (every row read in full)':42} {first[0] * 1e3:10.1f} {first[1] * 1e3:10.1f}")
    for label, base, ours in (
        ("steady, nothing changed", samples["full-idle"], samples["ctr-idle"]),
        (f"after {changes} status writes", samples["full"], samples["ctr"]),
    ):
        b, o = _median(base), _median(ours)
        print(
            f"{label:42} {b[0] * 1e3:10.1f} {b[1] * 1e3:10.1f} {o[0] * 1e3:10.3f} "
            f"{o[1] * 1e3:10.3f} {o[1] / b[1]:6.3f}x"
        )
    idle, whole = _median(samples["ctr-idle"])[1], _median(samples["full-idle"])[1]
    mean = (idle * (FULL_EVERY - 1) + whole) / FULL_EVERY
    print(
        f"idle, with the full read every {FULL_EVERY} refreshes: mean loop CPU "
        f"{mean * 1e3:.3f} ms per refresh ({mean / whole:.3f}x), the full read's "
        f"{whole * 1e3:.1f} ms once every {FULL_EVERY * REFRESH_S:g} s"
    )


def _median(samples: list[Sample]) -> Sample:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


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


async def run(url: str, count: int, changes: int, deletes: int, rounds: int) -> None:
    engine = open_database(url)
    repository = EndpointRepository(engine)
    try:
        await seed(repository, count)
        await refresh_costs(repository, count, changes, rounds)
        await freshness(repository, engine, deletes)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--deletes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    measure = (args.endpoints, args.changes, args.deletes, args.rounds)
    if args.database == "postgres":
        with fresh_postgres_database() as url:
            asyncio.run(run(url, *measure))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite:///{Path(tmp) / 'bench.db'}", *measure))


if __name__ == "__main__":
    main()
