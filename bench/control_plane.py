"""Control-plane latency with many endpoints stored.

Target (DESIGN.md section 5): list/get within 50 ms p99 with 10,000 endpoints stored.
Fills a fresh database with N endpoints spread over owners (through the repository,
the same code the API uses), starts a real `llm-launch serve`, and measures request
latency of get and list against GET /healthz measured in the same run as the baseline.

The server stores the endpoints without running them (`--backend none` by default): what
is measured is the API and the store, and 10,000 simulated engines would only load the
machine. `--backend local` runs them, as a deployment would.

    .venv/bin/python bench/control_plane.py [--endpoints 10000] [--database sqlite|postgres]
        [--backend none|local]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import endpoint_body
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository

OWNERS = 100
KEY = "bench-key-0123456789abcdef"


async def fill(url: str, count: int) -> None:
    engine = open_database(url)
    repository = EndpointRepository(engine)
    catalog = load_hardware_catalog()
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        spec = build_spec(endpoint_body(name=f"ep-{i:05d}"), catalog)
        async with semaphore:
            await repository.create(f"owner{i % OWNERS}", spec)

    await asyncio.gather(*(one(i) for i in range(count)))
    await engine.dispose()


def measure(client: httpx.Client, path: str, params: dict[str, str] | None, n: int) -> list[float]:
    for _ in range(20):
        client.get(path, params=params)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path, params=params)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def run(url: str, count: int, requests: int, data_dir: Path, backend: str) -> None:
    started = time.perf_counter()
    asyncio.run(fill(url, count))
    print(f"stored {count} endpoints over {OWNERS} owners in {time.perf_counter() - started:.1f}s")
    keys = ",".join(f"owner{i}:{KEY}{i:03d}" for i in range(OWNERS))
    env = {"LLM_LAUNCH_API_KEYS": keys, "LLM_LAUNCH_BACKEND": backend}
    if backend == "local":
        env["LLM_LAUNCH_ENGINE_MODE"] = "simulated"
    print(f"serving with backend {backend}")
    server = RunningServer(url, data_dir, env=env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": f"{KEY}007"}) as client:
            baseline = measure(client, "/healthz", None, requests)
            cases = {
                "get one endpoint": ("/v1/llm/model-endpoints/ep-00007", None),
                "list with name filter": ("/v1/llm/model-endpoints", {"name": "ep-00007"}),
                f"list all of one owner ({count // OWNERS})": ("/v1/llm/model-endpoints", None),
            }
            base_p50, base_p99 = p(baseline, 50), p(baseline, 99)
            print(f"{'request':40} {'p50 ms':>8} {'p99 ms':>8} {'p99/baseline':>13} {'target':>8}")
            print(f"{'GET /healthz (baseline)':40} {base_p50:8.2f} {base_p99:8.2f} {1.0:13.1f}")
            for label, (path, params) in cases.items():
                samples = measure(client, path, params, requests)
                ok = "ok" if p(samples, 99) <= 50 else "MISSED"
                print(
                    f"{label:40} {p(samples, 50):8.2f} {p(samples, 99):8.2f} "
                    f"{p(samples, 99) / base_p99:13.1f} {ok:>8}"
                )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--backend", choices=["none", "local"], default="none",
        help="none: store only (default); local: run every endpoint's simulated engine",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        if args.database == "sqlite":
            url = f"sqlite:///{data_dir / 'bench.db'}"
            run(url, args.endpoints, args.requests, data_dir, args.backend)
        else:
            with fresh_postgres_database() as url:
                run(url, args.endpoints, args.requests, data_dir, args.backend)


if __name__ == "__main__":
    main()
