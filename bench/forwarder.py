"""Forwarder overhead against nginx `proxy_pass` (keep-alive), measured in the same run.

Targets (DESIGN.md section 5): at least half nginx's request rate with the proxy sharing
the engine's core; at most ~200 µs of proxy CPU and +0.5 ms per request; stream time
within 10% of nginx's at 32 concurrent streams.

Setup, all on loopback: the fake engine (`tests/fakes/engine.py`, uvicorn + uvloop) and
the proxy under test share CPU core 0; the load generator runs on core 1. Each case is
measured straight to the engine, through nginx (its own temporary prefix and config, a
child process with `master_process off`, one worker, upstream keep-alive,
`proxy_buffering off`), and through `llm-launch-forwarder`.

- Request rate and latency: `wrk` (C, event-driven, light enough to leave the proxy
  the bottleneck), 32 keep-alive connections for the rate, 1 for the added latency.
- Proxy CPU per request: utime+stime from /proc/<pid>/stat over the run / requests.
- Streams: 32 concurrent SSE streams of 64 events 5 ms apart, read by an asyncio client
  over raw sockets (on core 1); time from request to the last byte.

    apt-get update && apt-get install -y nginx wrk       # once, as root
    .venv/bin/python bench/forwarder.py [--duration 5] [--stream-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, CLIENT_CORE = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Every server gets the token (the forwarder checks it, as in production; nginx and the
# engine ignore it) and every request carries it, so each path pays the same header.
TOKEN = "bench-forwarder-token"
TOKEN_ENV = "LLM_LAUNCH_FORWARDER_TOKEN"
STREAMS, STREAM_EVENTS, STREAM_INTERVAL_S = 32, 64, 0.005

BODIES = {
    "/v1/completions": '{"model":"fake-model","prompt":"hello","max_tokens":16}',
    "/generate": '{"text":"hello","sampling_params":{"max_new_tokens":16}}',
    "/predict": '{"prompt":"hello","max_new_tokens":16,"temperature":0.5}',
}
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream engine {{ {servers} keepalive 512; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(core: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {core})


def cpu_s(process: subprocess.Popen[bytes] | None) -> float:
    """utime + stime of `process` so far (0 for none), from /proc/<pid>/stat."""
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None  # None: no proxy (straight to the engine)
    engine: subprocess.Popen[bytes] | None = None


@contextmanager
def started(name: str, argv: list[str], port: int, log: Path) -> Iterator[Server]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_pinned(SERVER_CORE), env={**os.environ, TOKEN_ENV: TOKEN},
        )  # fmt: skip
    try:
        _wait_port(port, process, log)
        yield Server(name, f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not listen on {port}:\n{log.read_text()}")


def engine(tmp: Path) -> tuple[str, list[str], int, Path]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.fakes.engine",
        "--port",
        str(port),
        "--chunk-interval-s",
        str(STREAM_INTERVAL_S),
    ]
    return "engine", argv, port, tmp / "engine.log"


def nginx(tmp: Path, engine_port: int) -> tuple[str, list[str], int, Path]:
    port, prefix = free_port(), tmp / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    servers = f"server 127.0.0.1:{engine_port};"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, servers=servers))
    argv = [_require("nginx"), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    return "nginx", argv, port, tmp / "nginx.log"


def forwarder(tmp: Path, engine_port: int) -> tuple[str, list[str], int, Path]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "llm_launch.runtime.forwarder",
        "--port",
        str(port),
        "--engine-url",
        f"http://127.0.0.1:{engine_port}",
        "--engine-api",
        "sglang",
        "--ready-check-path",
        "/health_generate",
        "--log-level",
        "warning",
    ]
    return "forwarder", argv, port, tmp / "forwarder.log"


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        sys.exit(
            f"{program} not found: install it with `apt-get update && apt-get install -y "
            f"nginx wrk` (as root), then run this again"
        )
    return path


# --- request rate and latency (wrk) ---------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    proxy_cpu_us: float  # per request
    engine_cpu_us: float  # per request


def wrk(server: Server, path: str, connections: int, duration: int, tmp: Path) -> Load:
    script = tmp / "post.lua"
    body = BODIES[path].replace("'", "\\'")
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {TOKEN}'\n"
    )
    url = server.url + path
    common = [_require("wrk"), "-t1", f"-c{connections}", "--latency", "-s", str(script), url]
    _run_pinned([*common, "-d1s"])  # warm-up
    proxy, engine = cpu_s(server.process), cpu_s(server.engine)
    out = _run_pinned([*common, f"-d{duration}s"])
    proxy, engine = cpu_s(server.process) - proxy, cpu_s(server.engine) - engine
    requests = int(_find(r"(\d+) requests in", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_wrk_ms(out, "50%"),
        p99_ms=_wrk_ms(out, "99%"),
        requests=requests,
        errors=int(errors.group(1)) if errors else 0,
        proxy_cpu_us=proxy / max(requests, 1) * 1e6,
        engine_cpu_us=engine / max(requests, 1) * 1e6,
    )


def _run_pinned(argv: list[str]) -> str:
    run = subprocess.run(
        argv, capture_output=True, text=True, check=True, preexec_fn=_pinned(CLIENT_CORE)
    )
    return run.stdout


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return found.group(1)


def _wrk_ms(out: str, label: str) -> float:
    value = _find(rf"{label}\s+([\d.]+(?:us|ms|s))", out)
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


# --- streams (asyncio, raw sockets) ---------------------------------------------------


async def _one_stream(port: int, path: str, body: bytes) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    writer.close()
    if b" 200 " not in received[:16] or received.count(b"data:") < STREAM_EVENTS:
        raise RuntimeError(f"bad stream from {path}: {received[:300]!r}")
    return time.perf_counter() - started


def streams(server: Server, path: str, rounds: int) -> tuple[float, float]:
    """(mean, p99) seconds per stream, STREAMS at a time."""
    port = int(server.url.rsplit(":", 1)[1])
    body = {
        "/v1/chat/completions": '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],'
        f'"max_tokens":{STREAM_EVENTS},"stream":true}}',
        "/generate": f'{{"text":"hi","sampling_params":{{"max_new_tokens":{STREAM_EVENTS}}},'
        '"stream":true}',
        "/stream": f'{{"prompt":"hi","max_new_tokens":{STREAM_EVENTS},"temperature":0.5}}',
    }[path].encode()

    async def run() -> list[float]:
        times: list[float] = []
        for _ in range(rounds + 1):  # the first round warms up
            batch = await asyncio.gather(*(_one_stream(port, path, body) for _ in range(STREAMS)))
            times.extend(batch)
        return times[STREAMS:]

    times = asyncio.run(run())
    return statistics.mean(times), statistics.quantiles(times, n=100)[98]


# --- report ---------------------------------------------------------------------------


def report_loads(title: str, rows: dict[str, Load]) -> None:
    print(f"\n{title}")
    columns = ("req/s", "p50 ms", "p99 ms", "proxy µs/req", "engine µs/req", "errors")
    print(f"  {'via':22}" + "".join(f"{c:>14}" for c in columns))
    for name, row in rows.items():
        values = (
            f"{row.rps:.0f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            f"{row.proxy_cpu_us:.0f}",
            f"{row.engine_cpu_us:.0f}",
            str(row.errors),
        )
        print(f"  {name:22}" + "".join(f"{v:>14}" for v in values))


def verdicts(
    rate: dict[str, Load],
    latency: dict[str, Load],
    launch: dict[str, Load],
    stream: dict[str, float],
) -> None:
    direct, ngx, fwd = (rate[k] for k in ("direct", "nginx", "forwarder"))
    added_ngx = latency["nginx"].p50_ms - latency["direct"].p50_ms
    added_fwd = latency["forwarder"].p50_ms - latency["direct"].p50_ms
    stream_ratio = stream["forwarder"] / stream["nginx"]
    predict_ratio = launch["forwarder /predict"].rps / launch["nginx /generate"].rps
    checks = [
        ("pass-through rate vs nginx (>= 0.5)", fwd.rps / ngx.rps, fwd.rps / ngx.rps >= 0.5),
        ("/predict rate vs nginx (>= 0.5)", predict_ratio, predict_ratio >= 0.5),
        ("proxy CPU µs/req (<= 200)", fwd.proxy_cpu_us, fwd.proxy_cpu_us <= 200),
        ("added p50 ms, c=1 (<= 0.5)", added_fwd, added_fwd <= 0.5),
        ("stream time vs nginx (<= 1.10)", stream_ratio, stream_ratio <= 1.10),
    ]
    print(
        f"\nnginx: {ngx.rps / direct.rps:.2f}x the engine's direct rate, "
        f"{ngx.proxy_cpu_us:.0f} µs CPU/req, +{added_ngx:.2f} ms p50 at c=1"
    )
    print("forwarder, against the targets:")
    for label, value, ok in checks:
        print(f"  {label:38} {value:8.2f}  {'ok' if ok else 'MISSED'}")
    launch_stream = stream["forwarder /stream"] / stream["nginx /generate"]
    print(f"  {'Launch /stream vs nginx /generate':38} {launch_stream:8.2f}")


def run_loads(
    targets: dict[str, Server], duration: int, tmp: Path
) -> tuple[dict[str, Load], dict[str, Load], dict[str, Load]]:
    rate = {n: wrk(s, "/v1/completions", 32, duration, tmp) for n, s in targets.items()}
    report_loads("POST /v1/completions (pass-through), 32 connections", rate)
    latency = {n: wrk(s, "/v1/completions", 1, duration, tmp) for n, s in targets.items()}
    report_loads("POST /v1/completions (pass-through), 1 connection", latency)
    launch = {
        "direct /generate": wrk(targets["direct"], "/generate", 32, duration, tmp),
        "nginx /generate": wrk(targets["nginx"], "/generate", 32, duration, tmp),
        "forwarder /predict": wrk(targets["forwarder"], "/predict", 32, duration, tmp),
    }
    report_loads("Launch /predict (mapped to /generate) vs /generate, 32 connections", launch)
    return rate, latency, launch


def run_streams(targets: dict[str, Server], rounds: int) -> dict[str, float]:
    print(
        f"\n{STREAMS} concurrent streams x {STREAM_EVENTS} events, "
        f"{STREAM_INTERVAL_S * 1000:g} ms apart (seconds per stream)"
    )
    chat = "/v1/chat/completions"
    cases = [
        ("direct", "direct", chat),
        ("nginx", "nginx", chat),
        ("forwarder", "forwarder", chat),
        ("nginx /generate", "nginx", "/generate"),
        ("forwarder /stream", "forwarder", "/stream"),
    ]
    stream = {}
    for name, target, path in cases:
        mean, p99 = streams(targets[target], path, rounds)
        stream[name] = mean
        print(f"  {name:22} {path:22} mean {mean:6.3f}  p99 {p99:6.3f}")
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--stream-rounds", type=int, default=3)
    args = parser.parse_args()
    _require("nginx"), _require("wrk")
    os.sched_setaffinity(0, {CLIENT_CORE})
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        eng = stack.enter_context(started(*engine(tmp)))
        engine_port = int(eng.url.rsplit(":", 1)[1])
        ngx = stack.enter_context(started(*nginx(tmp, engine_port)))
        fwd = stack.enter_context(started(*forwarder(tmp, engine_port)))
        ngx.engine = fwd.engine = eng.process
        direct = Server("direct", eng.url, None, eng.process)
        targets = {"direct": direct, "nginx": ngx, "forwarder": fwd}
        print(
            f"engine + proxy on core {SERVER_CORE}, load on core {CLIENT_CORE}; "
            f"{args.duration}s per wrk run"
        )
        rate, latency, launch = run_loads(targets, args.duration, tmp)
        stream = run_streams(targets, args.stream_rounds)
        verdicts(rate, latency, launch, stream)


if __name__ == "__main__":
    main()
