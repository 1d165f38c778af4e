"""Cost of one reconciler pass with many endpoints stored.

Fills a fresh SQLite database with N endpoints (through the repository), lets a first pass
record their status, then times steady-state passes (an in-memory backend that does
nothing, so the store is what is measured) against the baseline of reading every endpoint
in full, in the same run.

    .venv/bin/python bench/reconcile_pass.py [--endpoints 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.services.reconciler import Reconciler
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository


async def run(url: str, count: int, passes: int) -> None:
    engine = open_database(url)
    repository = EndpointRepository(engine)
    catalog = load_hardware_catalog()
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with semaphore:
            await repository.create(
                f"owner{i % 100}", build_spec(endpoint_body(name=f"e-{i:05d}"), catalog)
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    reconciler = Reconciler(repository, FakeBackend())
    await reconciler.reconcile_once()  # records every status once
    full, steady = [], []
    for _ in range(passes):
        start = time.perf_counter()
        await repository.list_all()
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        await reconciler.reconcile_once()
        steady.append(time.perf_counter() - start)
    await engine.dispose()
    base, ours = statistics.median(full), statistics.median(steady)
    print(f"{count} endpoints, median of {passes} passes")
    print(f"  read every endpoint in full (baseline)  {base * 1000:8.1f} ms")
    print(f"  steady reconciler pass                  {ours * 1000:8.1f} ms  ({ours / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.endpoints, args.passes))


if __name__ == "__main__":
    main()
