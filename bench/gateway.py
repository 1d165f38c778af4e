"""The routed inference path, llm-launch against sglang-router, on the same engines in one run.

One real `llm-launch serve` (local backend, simulated engine, zero TTFT/TPOT) runs a
2-group SGLang endpoint; `sglang-router` (SGLang's Rust load balancer, from PyPI, in the
bench's own virtualenv `bench/.venv-router`, created on first use) is pointed at the same
two engine processes with round-robin routing. The same work then goes through both:

- chat: the router's `/v1/chat/completions` against llm-launch's `/v2/chat/completions`
  (API hop, then the group's forwarder, then the engine);
- Launch: the router's `/generate` against llm-launch's `/v1/llm/completions-sync` (the
  forwarder maps the Launch request to the engine's `/generate` and back).

A third column, "llm-launch gateway x2", sends llm-launch's requests to a
`llm-launch gateway --processes 2` on the server's database instead (two inference-only
processes sharing a port; its "API" CPU is theirs).

A fourth, "nginx (one hop)", sends the router's requests through nginx (`proxy_pass` to
the same two engines, round robin, upstream keep-alive, one worker, no buffering: needs
Debian's `nginx`): what one hop costs in a compiled proxy built for it. It bounds what a
native forwarder could bring: the whole path would still cost the API hop plus at least
that much. The summary under each table prints the CPU of the whole path, and of the
API hop plus nginx's, as ratios to the router's.

Load: `wrk` (one thread, keep-alive, 32 connections by default) posting the body; each
round measures every column, their order alternating between rounds, so that a load spike
on this shared machine does not skew one column. Printed per route and column: req/s and
its ratio to the router in the same round, p50/p99 (the median of the rounds' wrk
percentiles), and CPU per request of each process (utime+stime deltas from
/proc/PID/stat: router, API, forwarders, engines).

The router never leaves the machine: `HF_ENDPOINT` points at a loopback port held bound
and never listening, so its tokenizer look-up is refused at once.

    apt-get update && apt-get install -y wrk nginx  # once, as root
    .venv/bin/python bench/gateway.py [--rounds 3] [--duration 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.forwarder import NGINX_CONF, _require
from tests.builders import endpoint_body
from tests.support.deletes import wait_until_deleted
from tests.support.local_groups import group_records, wait_for
from tests.support.server import RunningServer, free_port, simulated_local_server

ROOT = Path(__file__).resolve().parent.parent
ROUTER_VENV = ROOT / "bench" / ".venv-router"
ROUTER_PACKAGE = "sglang-router==0.3.2"  # the version the issue measured
CLK_TCK = os.sysconf("SC_CLK_TCK")
OWNER, KEY = "bench", "bench-gateway-key-0123456789"
NAME = "gw-bench"
PROMPT = "Hello there, how are you today?"

# (route label, column) -> (path, body); the llm-launch paths also carry the endpoint name
# and the owner's key, which the router has no notion of.
CASES: dict[str, dict[str, tuple[str, str]]] = {
    "chat": {
        "sglang-router": (
            "/v1/chat/completions",
            f'{{"model":"{NAME}","messages":[{{"role":"user","content":"{PROMPT}"}}],'
            '"max_tokens":16}',
        ),
        "llm-launch": (
            f"/v2/chat/completions?model_endpoint_name={NAME}",
            f'{{"model":"{NAME}","messages":[{{"role":"user","content":"{PROMPT}"}}],'
            '"max_tokens":16}',
        ),
    },
    "launch": {
        "sglang-router": (
            "/generate",
            f'{{"text":"{PROMPT}","sampling_params":{{"max_new_tokens":16,"temperature":0.5}}}}',
        ),
        "llm-launch": (
            f"/v1/llm/completions-sync?model_endpoint_name={NAME}",
            f'{{"prompt":"{PROMPT}","max_new_tokens":16,"temperature":0.5}}',
        ),
    },
}
GATEWAY = "llm-launch gateway x2"
GATEWAY_PROCESSES = 2
NGINX = "nginx (one hop)"
for _cases in CASES.values():
    _cases[GATEWAY] = _cases["llm-launch"]  # the same requests, to the gateway's port
    _cases[NGINX] = _cases["sglang-router"]  # the router's requests, through nginx
ROUTE_TITLES = {
    "chat": "chat: router /v1/chat/completions vs llm-launch /v2/chat/completions",
    "launch": "Launch: router /generate vs llm-launch /v1/llm/completions-sync",
}


# --- processes ------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` so far, all threads, from /proc/<pid>/stat (0 once gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (several API workers, if serve runs them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def api_pids(server_pid: int, endpoint: Endpoint) -> list[int]:
    """The API server's processes: serve and whatever it runs, less the groups' processes
    (which the local backend detaches, but are excluded in any case)."""
    groups = {*endpoint.engine_pids, *endpoint.forwarder_pids}
    return [pid for pid in descendants(server_pid) if pid not in groups]


def router_python() -> Path:
    """The bench's own environment for sglang-router (never the project's .venv)."""
    python = ROUTER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {ROUTER_VENV.relative_to(ROOT)} with {ROUTER_PACKAGE} ...", flush=True)
        venv.create(ROUTER_VENV, with_pip=True)
    probe = subprocess.run([python, "-c", "import sglang_router"], capture_output=True)
    if probe.returncode != 0:
        pip = [python, "-m", "pip", "install", "-q", ROUTER_PACKAGE]
        subprocess.run(pip, check=True)
    return python


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that is bound (so nothing else takes it) but never listens:
    a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def router(
    engines: list[str], tmp: Path, hf_port: int, policy: str = "round_robin"
) -> Iterator[tuple[str, int]]:
    """sglang-router over `engines` with `--policy policy` (round robin unless told; the
    policy's thresholds at their defaults); yields (base URL, pid) once it routes."""
    port = free_port()
    argv = [
        str(router_python()), "-m", "sglang_router.launch_router", "--host", "127.0.0.1",
        "--port", str(port), "--policy", policy, "--worker-startup-check-interval",
        "1", "--log-level", "warn", "--worker-urls", *engines,
        # Its metrics exporter's own port, free: the default (29000) is taken by any other
        # router running on the machine, which makes this one panic at start.
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
    ]  # fmt: skip
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{hf_port}"}
    log = tmp / "router.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        path, body = CASES["launch"]["sglang-router"]
        _wait_answering(url + path, body, {}, process, log)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def nginx(engines: list[str], tmp: Path) -> Iterator[tuple[str, int]]:
    """nginx as a one-hop proxy over `engines` (round robin): (base URL, pid)."""
    binary = _require("nginx")
    port, prefix = free_port(), tmp / "nginx"
    prefix.mkdir()
    servers = " ".join(f"server {url.removeprefix('http://')};" for url in engines)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, servers=servers))
    log = tmp / "nginx.log"
    with log.open("wb") as out:
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        path, body = CASES["launch"][NGINX]
        _wait_answering(url + path, body, {}, process, log)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_answering(
    url: str, body: str, headers: dict[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    headers = {**headers, "content-type": "application/json"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.post(url, content=body, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 in 60s:\n{log.read_text()[-3000:]}")


@dataclass
class Endpoint:
    """The 2-group endpoint's processes and its engines' URLs."""

    engines: list[str]
    engine_pids: list[int]
    forwarder_pids: list[int]


def serve(tmp: Path) -> RunningServer:
    env = {
        "LLM_LAUNCH_API_KEYS": f"{OWNER}:{KEY}",
        "LLM_LAUNCH_SIM_TTFT_MS": "0",
        "LLM_LAUNCH_SIM_TPOT_MS": "0",
        "LLM_LAUNCH_LOG_LEVEL": "warning",
    }
    return simulated_local_server(tmp, env).start()


@contextmanager
def gateway(tmp: Path) -> Iterator[tuple[str, int]]:
    """`llm-launch gateway --processes 2` on the server's SQLite file: (URL, parent pid)."""
    port = free_port()
    command = [sys.executable, "-m", "llm_launch", "gateway", "--port", str(port),
               "--processes", str(GATEWAY_PROCESSES), "--log-level", "warning",
               "--database-url", f"sqlite:///{tmp / 'db.sqlite'}"]  # fmt: skip
    env = {**os.environ, "LLM_LAUNCH_API_KEYS": f"{OWNER}:{KEY}"}
    with (tmp / "gateway.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        path, body = CASES["chat"][GATEWAY]  # once the gateway routes the endpoint
        _wait_answering(url + path, body, {"x-api-key": KEY}, process, tmp / "gateway.log")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def two_groups(server: RunningServer, tmp: Path) -> Iterator[Endpoint]:
    """A READY 2-group SGLang endpoint; deleted (its processes stopped) on the way out."""
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=30) as client:
        body = endpoint_body(name=NAME, inference_framework="sglang", min_workers=2, max_workers=2)
        client.post("/v1/llm/model-endpoints", json=body).raise_for_status()
        try:
            ready = wait_for(client, NAME, lambda e: e["status"] == "READY", timeout=120)
            records = group_records(tmp, str(ready["id"]))
            yield Endpoint(
                engines=[f"http://127.0.0.1:{g['ports']['engines'][0]}" for g in records],
                engine_pids=[_pid(g, "rank-0") for g in records],
                forwarder_pids=[_pid(g, "forwarder") for g in records],
            )
        finally:
            client.delete(f"/v1/llm/model-endpoints/{NAME}")
            wait_until_deleted(client, NAME)


def _pid(group: dict[str, object], name: str) -> int:
    processes = group["processes"]
    assert isinstance(processes, list)
    return next(int(p["pid"]) for p in processes if p["name"] == name)


# --- load (wrk) -----------------------------------------------------------------------


@dataclass
class Round:
    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float]  # process kind -> CPU µs per request


def wrk(url: str, body: str, headers: dict[str, str], pids: dict[str, list[int]],
        args: argparse.Namespace, tmp: Path) -> Round:  # fmt: skip
    script = tmp / "post.lua"
    lines = ["wrk.method = 'POST'", f"wrk.body = '{body}'",
             "wrk.headers['Content-Type'] = 'application/json'"]  # fmt: skip
    lines += [f"wrk.headers['{k}'] = '{v}'" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    common = [_wrk(), "-t1", f"-c{args.connections}", "--latency", "-s", str(script), url]
    subprocess.run([*common, "-d1s"], capture_output=True, check=True)  # warm-up
    before = {kind: sum(cpu_s(p) for p in group) for kind, group in pids.items()}
    out = subprocess.run(
        [*common, f"-d{args.duration}s"], capture_output=True, text=True, check=True
    ).stdout
    requests = int(_find(r"(\d+) requests in", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    return Round(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        requests=requests,
        errors=(int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
        p50_ms=_wrk_ms(out, "50%"),
        p99_ms=_wrk_ms(out, "99%"),
        cpu_us={
            kind: (sum(cpu_s(p) for p in group) - before[kind]) / max(requests, 1) * 1e6
            for kind, group in pids.items()
        },
    )


def _wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("wrk not found: `apt-get update && apt-get install -y wrk` (as root)")
    return path


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return found.group(1)


def _wrk_ms(out: str, label: str) -> float:
    value = _find(rf"{label}\s+([\d.]+(?:us|ms|s))", out)
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


# --- the run --------------------------------------------------------------------------


@dataclass
class Column:
    """Where a column sends its load and which processes it costs."""

    base_url: str
    headers: dict[str, str]
    pids: dict[str, list[int]]
    rounds: dict[str, list[Round]] = field(default_factory=dict)  # route -> rounds


def probe(columns: dict[str, Column]) -> None:
    """Every case answers 200 once before any load (a wrong body would measure errors)."""
    for route, cases in CASES.items():
        for name, (path, body) in cases.items():
            headers = {**columns[name].headers, "content-type": "application/json"}
            answer = httpx.post(columns[name].base_url + path, content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"{name} {route}: {answer.status_code} {answer.text[:500]}")


def measure(columns: dict[str, Column], args: argparse.Namespace, tmp: Path) -> None:
    probe(columns)
    names = list(columns)
    for number in range(args.rounds):
        order = names if number % 2 == 0 else names[::-1]
        for route in CASES:
            for name in order:
                column = columns[name]
                path, body = CASES[route][name]
                result = wrk(column.base_url + path, body, column.headers, column.pids, args, tmp)
                column.rounds.setdefault(route, []).append(result)
        print(f"round {number + 1}/{args.rounds} done", flush=True)


def report(columns: dict[str, Column], args: argparse.Namespace) -> None:
    kinds = ("router", "nginx", "API", "forwarders", "engines")
    for route, title in ROUTE_TITLES.items():
        print(f"\n{title} ({args.connections} connections, {args.rounds} rounds of "
              f"{args.duration}s)")  # fmt: skip
        head = ("req/s", "vs router", "(rounds)", "p50 ms", "p99 ms", "errors")
        print(f"  {'column':22}" + "".join(f"{h:>11}" for h in head)
              + "".join(f"{k + ' µs':>14}" for k in kinds))  # fmt: skip
        base = columns["sglang-router"].rounds[route]
        for name, column in columns.items():
            rows = column.rounds[route]
            ratios = [r.rps / b.rps for r, b in zip(rows, base, strict=True)]
            rate, base_rate = (statistics.mean(r.rps for r in x) for x in (rows, base))
            values = (
                f"{rate:.0f}",
                f"{rate / base_rate:.2f}",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                f"{statistics.median(r.p50_ms for r in rows):.2f}",
                f"{statistics.median(r.p99_ms for r in rows):.2f}",
                str(sum(r.errors for r in rows)),
            )
            cpu = [
                statistics.mean(r.cpu_us[k] for r in rows) if k in column.pids else None
                for k in kinds
            ]
            print(f"  {name:22}" + "".join(f"{v:>11}" for v in values)
                  + "".join(f"{'-' if c is None else f'{c:.0f}':>14}" for c in cpu))  # fmt: skip
        print_path_ratios(columns, route)


def print_path_ratios(columns: dict[str, Column], route: str) -> None:
    """CPU per request of llm-launch's whole path, and of its API hop plus one nginx hop
    (the floor for any compiled forwarder), over the router's, round by round."""

    def per_round(name: str, kinds: tuple[str, ...]) -> list[float]:
        return [sum(r.cpu_us[k] for k in kinds) for r in columns[name].rounds[route]]

    router = per_round("sglang-router", ("router",))
    nginx_hop = per_round(NGINX, ("nginx",))
    for name in ("llm-launch", GATEWAY):
        api = per_round(name, ("API",))
        whole = per_round(name, ("API", "forwarders"))
        floor = [a + n for a, n in zip(api, nginx_hop, strict=True)]
        print(f"  {name}: CPU per request vs router: API + forwarders "
              f"{_ratios(whole, router)}, API alone {_ratios(api, router)}, "
              f"API + nginx's hop {_ratios(floor, router)}")  # fmt: skip


def _ratios(values: list[float], base: list[float]) -> str:
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    return f"{statistics.mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    _wrk()
    router_python()
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        server = serve(tmp)
        stack.callback(server.stop)
        endpoint = stack.enter_context(two_groups(server, tmp))
        hf_port = stack.enter_context(closed_port())
        router_url, router_pid = stack.enter_context(router(endpoint.engines, tmp, hf_port))
        gateway_url, gateway_pid = stack.enter_context(gateway(tmp))
        nginx_url, nginx_pid = stack.enter_context(nginx(endpoint.engines, tmp))
        assert server.pid is not None
        engines = {"engines": endpoint.engine_pids}
        columns = {
            "sglang-router": Column(router_url, {}, {"router": [router_pid], **engines}),
            "llm-launch": Column(
                server.url,
                {"x-api-key": KEY},
                {
                    "API": api_pids(server.pid, endpoint),
                    "forwarders": endpoint.forwarder_pids,
                    **engines,
                },
            ),
            GATEWAY: Column(
                gateway_url,
                {"x-api-key": KEY},
                {
                    "API": descendants(gateway_pid),
                    "forwarders": endpoint.forwarder_pids,
                    **engines,
                },
            ),
            NGINX: Column(nginx_url, {}, {"nginx": [nginx_pid], **engines}),
        }
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        engine_urls = ", ".join(endpoint.engines)
        print(f"llm-launch at {commit or 'unknown commit'}, {ROUTER_PACKAGE}, "
              f"{os.cpu_count()} CPUs, engines {engine_urls}", flush=True)  # fmt: skip
        measure(columns, args, tmp)
        report(columns, args)


if __name__ == "__main__":
    main()
