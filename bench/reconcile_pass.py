"""Cost of one reconciler pass with many endpoints stored.

Fills a fresh SQLite database with N endpoints (through the repository), lets a first pass
record their status and targets, then times steady-state passes (an in-memory backend that
does nothing but report one ready group per endpoint, so the store is what is measured)
against the baseline of reading every endpoint in full, in the same run. Last, the first
pass of a new reconciler over the same database (what a new leader does after a
failover), with the rows whose targets it wrote again.

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
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.services.reconciler import Reconciler
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository


class OneGroupEach(FakeBackend):
    """Every endpoint has one ready group, at a Service URL of its own."""

    def targets(self, endpoint: Endpoint) -> list[str]:
        return [f"http://llm-{endpoint.name}.llm-launch.svc:5000"]


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
    backend = OneGroupEach()
    reconciler = Reconciler(repository, backend)
    await reconciler.reconcile_once()  # records every status and targets once
    full, steady = [], []
    for _ in range(passes):
        start = time.perf_counter()
        await repository.list_all()
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        await reconciler.reconcile_once()
        steady.append(time.perf_counter() - start)
    rewritten = await _rewritten_targets(repository)
    start = time.perf_counter()
    await Reconciler(repository, backend).reconcile_once()
    leader = time.perf_counter() - start
    await engine.dispose()
    base, ours = statistics.median(full), statistics.median(steady)
    print(f"{count} endpoints, median of {passes} passes")
    print(f"  read every endpoint in full (baseline)  {base * 1000:8.1f} ms")
    print(f"  steady reconciler pass                  {ours * 1000:8.1f} ms  ({ours / base:.2f}x)")
    print(
        f"  a new leader's first pass               {leader * 1000:8.1f} ms  ({leader / base:.2f}x)"
        f", targets written again for {len(rewritten)} endpoints"
    )


async def _rewritten_targets(repository: EndpointRepository) -> list[str]:
    """The ids whose targets the repository is asked to write from now on."""
    written: list[str] = []
    record = repository.record

    async def counted(batch):  # type: ignore[no-untyped-def]
        written.extend(observed.endpoint_id for observed in batch if observed.write_targets)
        return await record(batch)

    repository.record = counted  # type: ignore[method-assign]
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.endpoints, args.passes))


if __name__ == "__main__":
    main()
