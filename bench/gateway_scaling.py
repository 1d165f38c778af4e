"""The inference hop over 1 and 2 gateway processes, and its p99 while a reconciler works.

Part 1, `hop`: what one inference hop costs and how it scales with processes, the work
behind it made cheap so that the hop is what saturates. The two "groups" are two server
blocks of one nginx (its own child, temporary prefix, `master_process off`, one worker)
answering canned bodies: SGLang's `/generate`, an OpenAI chat completion, a Launch
forwarder's `/predict` answer, and 200 on what sglang-router probes at startup (`/health`,
`/server_info`, `/model_info`). A fresh SQLite database, migrated by the code, holds one
READY endpoint whose stored targets (`EndpointRepository.set_targets`, what the reconciler
writes) are the two nginx URLs; no `serve` runs, so nothing rewrites them. Columns:
sglang-router (round robin over the two nginx URLs), `llm-launch gateway --processes 1`
and `--processes 2`, for chat (`/v2/chat/completions` vs the router's
`/v1/chat/completions`) and Launch (`/v1/llm/completions-sync` vs the router's
`/generate`). Load: `wrk`, one thread, keep-alive; each round measures every column, the
order alternating. Printed: req/s, its ratio to the router and x2's to x1, p50/p99, CPU
per request of the hop (router; gateway parent and children), nginx and wrk (wrk's from
its own rusage), the cores each kept busy and the machine's busy cores (`/proc/stat`), so
that what else ran shows as "other".

Part 2, `p99`: inference latency at a fixed moderate rate (`bench/paced_load.py`: open
loop, p99.9, latency from each request's due time) while `serve`'s reconciler goes over
many endpoints. Two real `llm-launch serve` (local backend, simulated engine with zero
TTFT/TPOT), each running one 2-group endpoint that takes the measured traffic, each with a
`llm-launch gateway --processes 2` on its database; into one of them the bench then stores
N more endpoints of 100 other owners (default 10,000) through `EndpointRepository`, with
that serve stopped and started again after (it adopts its running groups). Those are
scaled to zero (min_workers=0): the local backend runs min_workers groups and does not
autoscale, so none starts an engine, while every reconciler pass still applies and
observes each of them (`services/reconciler.py`; `--local-max-processes 4` guards that
nothing else starts). Both setups run throughout, so the machine's load is the same for
all four columns (serve's inference routes, which share the reconciler's event loop, and
the gateway's; with 0 and with N others), measured interleaved over rounds. How far the
passes got is read from the database: the others visited (no longer UPDATE_PENDING), and
probes: a few visited others get a status reason the backend does not report, which the
reconciler rewrites at its next visit; the delay is at most one pass period.

    apt-get update && apt-get install -y nginx wrk      # once, as root
    .venv/bin/python bench/gateway_scaling.py [--part hop|p99|both] [--rounds 3]
        [--duration 5] [--connections 32] [--rate 100] [--p99-duration 15] [--others 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.forwarder import _require
from bench.gateway import (
    CASES,
    KEY,
    NAME,
    OWNER,
    ROOT,
    ROUTER_PACKAGE,
    _find,
    _wrk_ms,
    cpu_s,
    descendants,
    router_python,
)
from bench.paced_load import Paced, paced_load
from bench.reconciler_probes import Probes, stored_targets, visited
from bench.scaling_processes import (
    ROUTER,
    AfterReport,
    Setup,
    fill,
    gateway,
    machine_busy_s,
    router,
    setup,
    store_routed_endpoint,
    upstreams,
)

X1, X2 = "gateway x1", "gateway x2"


# --- part 1: the hop alone (wrk) ------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: dict[str, float]  # kind -> CPU µs per request
    cores: dict[str, float]  # kind -> cores kept busy; "machine": all of it
    shares: list[float]  # each hop process's share of the hop's CPU


def run_wrk(url: str, body: str, headers: dict[str, str], pids: dict[str, list[int]],
            args: argparse.Namespace, tmp: Path) -> Load:  # fmt: skip
    script = tmp / "post.lua"
    lines = ["wrk.method = 'POST'", f"wrk.body = '{body}'",
             "wrk.headers['Content-Type'] = 'application/json'"]  # fmt: skip
    script.write_text(
        "\n".join(lines + [f"wrk.headers['{k}'] = '{v}'" for k, v in headers.items()])
    )
    argv = [_require("wrk"), "-t1", f"-c{args.connections}", "--latency", "-s", str(script), url]
    subprocess.run([*argv, "-d1s"], capture_output=True, check=True)  # warm-up
    every = [p for group in pids.values() for p in group]
    before, busy, wall = {p: cpu_s(p) for p in every}, machine_busy_s(), time.monotonic()
    process = subprocess.Popen([*argv, f"-d{args.duration}s"], stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)  # wrk's own CPU, from its rusage
    process.returncode = os.waitstatus_to_exitcode(status)
    wall, busy = time.monotonic() - wall, machine_busy_s() - busy
    spent = {p: cpu_s(p) - before[p] for p in every}
    cpu = {kind: sum(spent[p] for p in group) for kind, group in pids.items()}
    cpu["wrk"] = usage.ru_utime + usage.ru_stime
    requests = int(_find(r"(\d+) requests in", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    hop = [spent[p] for p in pids["hop"]]
    return Load(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_wrk_ms(out, "50%"),
        p99_ms=_wrk_ms(out, "99%"),
        errors=(int(errors.group(1)) if errors else 0) + ("Socket errors" in out),
        cpu_us={kind: s / max(requests, 1) * 1e6 for kind, s in cpu.items()},
        cores={**{kind: s / wall for kind, s in cpu.items()}, "machine": busy / wall},
        shares=[s / max(sum(hop), 1e-9) for s in hop],
    )


@dataclass
class Column:
    url: str
    headers: dict[str, str]
    case: str  # CASES's column: the router's requests or llm-launch's
    pids: dict[str, list[int]]
    rounds: dict[str, list[Load]] = field(default_factory=dict)  # route -> rounds


def hop(args: argparse.Namespace, tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls, nginx = stack.enter_context(upstreams(tmp))
        database_url = f"sqlite:///{tmp / 'hop.sqlite'}"
        asyncio.run(store_routed_endpoint(database_url, urls))
        router_url, router_pid = stack.enter_context(router(urls, tmp))
        x1_url, x1_pid = stack.enter_context(gateway(database_url, 1, tmp))
        x2_url, x2_pid = stack.enter_context(gateway(database_url, 2, tmp))
        ours = {"x-api-key": KEY}
        columns = {
            ROUTER: Column(router_url, {}, ROUTER, {"hop": [router_pid], "nginx": [nginx]}),
            X1: Column(x1_url, ours, "llm-launch", {"hop": descendants(x1_pid), "nginx": [nginx]}),
            X2: Column(x2_url, ours, "llm-launch", {"hop": descendants(x2_pid), "nginx": [nginx]}),
        }
        print(f"part 1, the hop: nginx groups {', '.join(urls)}; gateway x2 processes "
              f"{columns[X2].pids['hop']}", flush=True)  # fmt: skip
        for number in range(args.rounds):
            order = list(columns) if number % 2 == 0 else list(columns)[::-1]
            for route in CASES:
                for name in order:
                    column = columns[name]
                    path, body = CASES[route][column.case]
                    load = run_wrk(column.url + path, body, column.headers, column.pids, args, tmp)
                    column.rounds.setdefault(route, []).append(load)
            print(f"round {number + 1}/{args.rounds} done", flush=True)
        report_hop(columns, args)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def report_hop(columns: dict[str, Column], args: argparse.Namespace) -> None:
    titles = {"chat": "chat: router /v1/chat/completions vs gateway /v2/chat/completions",
              "launch": "Launch: router /generate vs gateway /v1/llm/completions-sync"}  # fmt: skip
    head = ("req/s", "vs router", "(rounds)", "p50 ms", "p99 ms", "errors", "hop µs",
            "nginx µs", "wrk µs", "hop cores", "machine", "other")  # fmt: skip
    for route, title in titles.items():
        print(f"\n{title} ({args.connections} connections, {args.rounds} rounds of "
              f"{args.duration}s)")  # fmt: skip
        print(f"  {'column':14}" + "".join(f"{h:>10}" for h in head))
        base = columns[ROUTER].rounds[route]
        for name, column in columns.items():
            print(
                f"  {name:14}" + "".join(f"{v:>10}" for v in _hop_row(column.rounds[route], base))
            )
        x1, x2 = columns[X1].rounds[route], columns[X2].rounds[route]
        ratios = [b.rps / a.rps for a, b in zip(x1, x2, strict=True)]
        names = [_process_name(pid) for pid in columns[X2].pids["hop"]]
        shares = [statistics.mean(r.shares[i] for r in x2) for i in range(len(names))]
        print(f"  gateway x2 / x1: {_mean_rps(x2) / _mean_rps(x1):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f} over the rounds); x2's hop CPU by process: "
              + ", ".join(f"{n} {s:.0%}" for n, s in zip(names, shares, strict=True)))  # fmt: skip


def _hop_row(rows: list[Load], base: list[Load]) -> list[str]:
    def mean(pick: Callable[[Load], float]) -> float:
        return statistics.mean(pick(r) for r in rows)

    ratios = [r.rps / b.rps for r, b in zip(rows, base, strict=True)]
    kinds = ("hop", "nginx", "wrk")
    machine = mean(lambda r: r.cores["machine"])
    other = machine - sum(mean(lambda r, k=k: r.cores[k]) for k in kinds)  # type: ignore[misc]
    return [
        f"{_mean_rps(rows):.0f}",
        f"{_mean_rps(rows) / _mean_rps(base):.2f}",
        f"{min(ratios):.2f}-{max(ratios):.2f}",
        f"{statistics.median(r.p50_ms for r in rows):.2f}",
        f"{statistics.median(r.p99_ms for r in rows):.2f}",
        str(sum(r.errors for r in rows)),
        *(f"{mean(lambda r, k=k: r.cpu_us[k]):.0f}" for k in kinds),  # type: ignore[misc]
        f"{mean(lambda r: r.cores['hop']):.2f}",
        f"{machine:.2f}",
        f"{other:.2f}",
    ]


def _mean_rps(rows: list[Load]) -> float:
    return statistics.mean(r.rps for r in rows)


def _process_name(pid: int) -> str:
    """The gateway's parent, multiprocessing's resource tracker, or a serving process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if b"resource_tracker" in command:
        return "tracker"
    return "process" if b"spawn_main" in command else "parent"


# --- part 2: p99 while the reconciler works (paced load) ------------------------------


@dataclass
class Window:
    paced: Paced
    cores: dict[str, float]  # "serve"/"gateway" -> cores its processes kept busy
    delays: list[float] = field(default_factory=list)  # the probes' (setup with others)
    pending: int = 0
    unwritten: bool = False
    visited: int = 0


def p99(args: argparse.Namespace, tmp: Path) -> None:
    with ExitStack() as stack:
        after_report = AfterReport()
        quiet = setup(tmp / "none", "21000-21999", stack, after_report)
        busy = setup(tmp / "many", "22000-22999", stack, after_report)
        fill(busy, args.others)
        path, body = CASES["chat"]["llm-launch"]
        names = [(kind, chosen) for kind in ("serve", "gateway x2") for chosen in (quiet, busy)]
        windows: dict[tuple[str, int], list[Window]] = {}
        for number in range(args.rounds):
            for kind, chosen in names if number % 2 == 0 else names[::-1]:
                url = (chosen.server.url if kind == "serve" else chosen.gateway_url) + path
                result = window(url, body, chosen, args)
                windows.setdefault((kind, chosen.others), []).append(result)
            kept = stored_targets(busy.database, OWNER, NAME)[1] is not None
            print(f"round {number + 1}/{args.rounds} done; {visited(busy.database)} of "
                  f"{args.others} others visited; the endpoint's stored targets "
                  f"{'in place' if kept else 'CLEARED'}", flush=True)  # fmt: skip
        report_p99(windows, args)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        after_report.reported = True


def window(url: str, body: str, chosen: Setup, args: argparse.Namespace) -> Window:
    """Paced load on `url`; the CPU of the setup's serve and gateway meanwhile."""
    pids = {"serve": [chosen.server.pid or 0], "gateway": descendants(chosen.gateway_pid)}
    before = {kind: sum(cpu_s(p) for p in group) for kind, group in pids.items()}
    wall = time.monotonic()
    with ExitStack() as stack:
        probes = stack.enter_context(Probes(chosen.database)) if chosen.others else None
        paced = paced_load(url, body, {"x-api-key": KEY}, rate=args.rate,
                           duration_s=args.p99_duration)  # fmt: skip
    wall = time.monotonic() - wall
    cores = {k: (sum(cpu_s(p) for p in group) - before[k]) / wall for k, group in pids.items()}
    result = Window(paced, cores)
    if probes is not None:
        result.delays, result.pending = probes.delays, probes.pending
        result.unwritten = probes.unwritten
        result.visited = visited(chosen.database)
    return result


def report_p99(windows: dict[tuple[str, int], list[Window]], args: argparse.Namespace) -> None:
    print(f"\nchat /v2/chat/completions at {args.rate:g} req/s (open loop), {args.rounds} "
          f"rounds of {args.p99_duration}s; percentiles over all rounds' answers")  # fmt: skip
    head = ("answered", "errors", "p50 ms", "p99 ms", "p99.9 ms", "p99 rounds")
    print(f"  {'column':26}" + "".join(f"{h:>12}" for h in head)
          + f"{'vs 0 others':>24}{'serve cores':>12}{'gw cores':>9}")  # fmt: skip
    cuts: dict[tuple[str, int], tuple[float, float, float]] = {}
    for (kind, others), rounds in windows.items():
        samples = sorted(s for w in rounds for s in w.paced.latencies_ms)
        errors = sum(sum(w.paced.errors.values()) for w in rounds)
        if len(samples) < 2 or any(len(w.paced.latencies_ms) < 2 for w in rounds):
            print(
                f"  {f'{kind}, {others} others':26}{len(samples):>12}{errors:>12}  too few answers"
            )
            continue
        every = statistics.quantiles(samples, n=1000, method="inclusive")
        cuts[kind, others] = (every[499], every[989], every[998])
        base = cuts.get((kind, 0))
        ratios = "-" if not others or base is None else " / ".join(
            f"{a / b:.2f}" for a, b in zip(cuts[kind, others], base, strict=True))  # fmt: skip
        per_round = [statistics.quantiles(w.paced.latencies_ms, n=100)[98] for w in rounds]
        values = (str(len(samples)), str(errors),
                  *(f"{v:.2f}" for v in cuts[kind, others]),
                  f"{min(per_round):.1f}-{max(per_round):.1f}")  # fmt: skip
        cores = [statistics.mean(w.cores[k] for w in rounds) for k in ("serve", "gateway")]
        print(f"  {f'{kind}, {others} others':26}" + "".join(f"{v:>12}" for v in values)
              + f"{ratios:>24}{cores[0]:>12.2f}{cores[1]:>9.2f}")  # fmt: skip
    every_window = [w for rounds in windows.values() for w in rounds]
    behind = max(w.paced.behind_ms for w in every_window)
    kinds = sum((w.paced.errors for w in every_window), Counter[str]())
    print(f"  (vs 0 others: p50 / p99 / p99.9 over the same column with 0 others; cores: that "
          f"setup's; the client fell behind its schedule by {behind:.1f} ms at most; errors "
          f"{dict(kinds) or 'none'}; sent again on a new connection, a kept-alive one "
          f"found closed: {sum(w.paced.retried for w in every_window)})")  # fmt: skip
    busy = [w for (_, others), rounds in windows.items() if others for w in rounds]
    delays = sorted(d for w in busy for d in w.delays)
    reached = max(w.visited for w in busy)
    print(f"reconciler, {args.others} others: {reached} visited by the end; probes rewritten "
          + (f"after median {statistics.median(delays):.1f}s, max {max(delays):.1f}s "
             f"({len(delays)} of {len(delays) + sum(w.pending for w in busy)} within their "
             f"{args.p99_duration}s window)" if delays else "in no window")
          + f"; {sum(w.unwritten for w in busy)} windows could not write theirs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["hop", "p99", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (hop)")
    parser.add_argument("--connections", type=int, default=32, help="wrk's (hop)")
    parser.add_argument("--rate", type=float, default=100, help="requests a second (p99)")
    parser.add_argument("--p99-duration", type=int, default=15, help="seconds per window (p99)")
    parser.add_argument("--others", type=int, default=10_000, help="endpoints stored (p99)")
    args = parser.parse_args()
    _require("nginx"), _require("wrk")
    router_python()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    print(f"llm-launch at {commit or 'unknown commit'}, {ROUTER_PACKAGE}, {os.cpu_count()} "
          f"CPUs, load average {os.getloadavg()[0]:.2f} at the start", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.part in ("hop", "both"):
            hop(args, tmp / "hop" if args.part == "both" else tmp)
        if args.part in ("p99", "both"):
            p99(args, tmp / "p99")


if __name__ == "__main__":
    main()
