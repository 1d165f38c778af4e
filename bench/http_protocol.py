"""Both servers' HTTP protocol against uvicorn's own, on the same trivial app, in one run.

What every hop of the routed path pays before any of our code runs: the control plane's
API and gateway processes and the forwarder beside each engine all serve on
`http_timeouts.HeaderTimeoutProtocol` (uvicorn's httptools protocol, with a head
deadline and `http_response.CoalescingCycle`, which writes a response's head with its
body). The baseline is uvicorn's `httptools` protocol itself, the same uvicorn and uvloop.

Each server answers every POST with a 140-byte JSON body (a completion's size), sent
the way our apps send it (`http.response.start`, then the body). wrk drives each column
at 16 connections (many requests per loop wake-up, as a busy forwarder sees) and at 1
(a wake-up per request, as a lightly loaded hop sees); columns interleave over rounds,
the order alternating. CPU is the server process's, per request.

    .venv/bin/python bench/http_protocol.py [--rounds 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.forwarder import _wait_port, free_port  # noqa: E402
from bench.gateway_scaling import Load, run_wrk  # noqa: E402

BODY = (
    b'{"id":"cmpl-0","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}'
)
REQUEST = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
COLUMNS = {"uvicorn httptools": "uvicorn", "llm-launch protocol": "llm-launch"}


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def serve(kind: str, port: int) -> None:
    """One server (run as this script's child with --serve)."""
    import uvicorn

    from llm_launch.http_timeouts import header_timeout_protocol

    protocol = "httptools" if kind == "uvicorn" else header_timeout_protocol(10.0)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=protocol,
                lifespan="off", access_log=False, log_level="warning")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve[0], int(args.serve[1]))
    results: dict[tuple[str, int], list[Load]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for name, kind in COLUMNS.items():
            port = free_port()
            log = Path(tmp) / f"{kind}.log"
            argv = [sys.executable, __file__, "--serve", kind, str(port)]
            process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
            _wait_port(port, process, log)
            servers[name] = (process, port)
        try:
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for connections in (16, 1):
                    args.connections = connections
                    for name in order:
                        process, port = servers[name]
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        load = run_wrk(url, REQUEST, {}, {"hop": [process.pid]}, args, Path(tmp))
                        results.setdefault((name, connections), []).append(load)
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait()
    report(results, args)


def report(results: dict[tuple[str, int], list[Load]], args: argparse.Namespace) -> None:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    print(f"\nllm-launch at {commit}, {args.rounds} rounds of {args.duration}s, medians")
    header = f"  {'column':<22}{'conns':>6}{'req/s':>9}{'ratio':>7}{'p50 ms':>8}"
    print(header + f"{'CPU µs/req':>12}{'ratio':>7}{'(rounds)':>14}")
    base_name = next(iter(COLUMNS))
    for connections in (16, 1):
        base = results[(base_name, connections)]
        base_rps = statistics.median(load.rps for load in base)
        base_cpu = statistics.median(load.cpu_us["hop"] for load in base)
        for name in COLUMNS:
            rows = results[(name, connections)]
            rps = statistics.median(load.rps for load in rows)
            cpu = [load.cpu_us["hop"] for load in rows]
            ratios = [c / b.cpu_us["hop"] for c, b in zip(cpu, base, strict=True)]
            print(
                f"  {name:<22}{connections:>6}{rps:>9.0f}{rps / base_rps:>7.2f}"
                f"{statistics.median(load.p50_ms for load in rows):>8.2f}"
                f"{statistics.median(cpu):>12.1f}{statistics.median(cpu) / base_cpu:>7.2f}"
                f"{min(ratios):>8.2f}-{max(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
