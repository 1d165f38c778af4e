"""How long `serve`'s event loop keeps its inference routes waiting while its reconciler
works over many endpoints: from a restart through the first pass, then steady passes.

A real `llm-launch serve` (local backend, simulated engine) restarted over a SQLite
database holding N endpoints of 100 owners, scaled to zero (`bench/reconciler_probes.py`:
none starts a process, every pass still applies and observes each), and the same with no
endpoint stored, one after the other in the same run. A probe sends one cheap inference
request every 10 ms, a chat for an endpoint that does not exist: it crosses the same front,
guard and routing table lookup as any completion and is answered 404 on serve's loop
without an upstream hop, so its latency is the loop's lag plus a constant. Printed per 5 s
window since the start: the endpoints the reconciler has visited, p50/p99/max of the probe,
and per column its steady windows (after the first pass) against the 0-endpoint column.

    .venv/bin/python bench/serve_loop_lag.py [--endpoints 10000] [--duration 40]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reconciler_probes import VISITED, store_others
from tests.support.server import simulated_local_server

KEY = "bench-serve-loop-key-0123456789"
PROBE = b'{"model":"no-such-endpoint","messages":[{"role":"user","content":"hi"}]}'
WINDOW_S = 5.0


@dataclass
class Window:
    end_s: float
    visited: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def probe(database: Path, count: int, duration_s: float, tmp: Path) -> list[Window]:
    """Start serve over `database`; probe its loop for `duration_s`."""
    env = {"LLM_LAUNCH_API_KEYS": f"bench:{KEY}", "LLM_LAUNCH_LOG_LEVEL": "warning",
           "LLM_LAUNCH_LOCAL_MAX_PROCESSES": "4"}  # fmt: skip
    server = simulated_local_server(tmp, env, f"sqlite:///{database}").start(timeout=180)
    windows: list[Window] = []
    try:
        started = window_start = time.monotonic()
        latencies: list[float] = []
        with httpx.Client(headers={"x-api-key": KEY}, timeout=30) as client:
            while time.monotonic() - started < duration_s:
                sent = time.perf_counter()
                answer = client.post(f"{server.url}/v2/chat/completions", content=PROBE)
                latencies.append(1000 * (time.perf_counter() - sent))
                if answer.status_code != 404:
                    raise RuntimeError(f"probe answered {answer.status_code}: {answer.text}")
                time.sleep(0.01)
                if time.monotonic() - window_start >= WINDOW_S:
                    windows.append(
                        summary(latencies, visited(database), time.monotonic() - started)
                    )
                    latencies, window_start = [], time.monotonic()
    finally:
        server.stop()
    print(f"\n{count} endpoints stored")
    print(f"  {'window end':>10} {'visited':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for w in windows:
        print(f"  {w.end_s:9.0f}s {w.visited:8d} {w.p50_ms:8.1f} {w.p99_ms:8.1f} {w.max_ms:8.1f}")
    return windows


def summary(latencies: list[float], visited: int, end_s: float) -> Window:
    cuts = statistics.quantiles(latencies, n=100)
    return Window(end_s, visited, cuts[49], cuts[98], max(latencies))


def visited(database: Path) -> int:
    with sqlite3.connect(database, timeout=30) as db:
        return int(db.execute(f"SELECT count(*) FROM endpoints WHERE {VISITED}").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per column")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        columns = {}
        for count in (0, args.endpoints):
            folder = tmp / f"n{count}"
            folder.mkdir(mode=0o700)
            database = folder / "db.sqlite"
            filled = time.monotonic()
            asyncio.run(store_others(database, count))
            print(f"stored {count} endpoints in {time.monotonic() - filled:.0f}s", flush=True)
            shutil.rmtree(folder / "local-backend", ignore_errors=True)
            columns[count] = probe(database, count, args.duration, folder)
    report(columns, args.endpoints)


def report(columns: dict[int, list[Window]], count: int) -> None:
    def steady(windows: list[Window], total: int) -> list[Window]:
        # Windows that began after the first pass had visited every endpoint.
        return [w for previous, w in itertools.pairwise(windows) if previous.visited >= total]

    base, ours = steady(columns[0], 0), steady(columns[count], count)
    if not base or not ours:
        print("\nno steady window in one column: run longer (--duration)")
        return
    first = [w for w in columns[count] if w not in ours]
    print("\nsteady windows, median over windows (vs 0 endpoints):")
    for label, pick in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
        b = statistics.median(getattr(w, pick) for w in base)
        o = statistics.median(getattr(w, pick) for w in ours)
        print(f"  {label}: {o:7.1f} ms against {b:7.1f} ms  ({o / b:.2f}x)")
    if first:
        worst_p99, worst = max(w.p99_ms for w in first), max(w.max_ms for w in first)
        print(f"until the first pass was done ({len(first)} windows): p99 up to "
              f"{worst_p99:.1f} ms, max {worst:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
