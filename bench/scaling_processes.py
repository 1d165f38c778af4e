"""The processes bench/gateway_scaling.py measures, started and stopped as its own.

Part 1's upstream "groups" (one nginx, two server blocks answering canned SGLang, OpenAI
and Launch-forwarder bodies), sglang-router and `llm-launch gateway`; part 2's setups (a
`serve` running a READY 2-group endpoint with a gateway beside it) and the filling of one
setup's database with other owners' endpoints. Each is a child of the bench, stopped on
the way out, its log in the bench's temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench.forwarder import NGINX_CONF as PROXY_CONF
from bench.forwarder import _require, _wait_port
from bench.gateway import (
    CASES,
    CLK_TCK,
    KEY,
    NAME,
    OWNER,
    ROOT,
    Endpoint,
    _wait_answering,
    closed_port,
    router_python,
    two_groups,
)
from bench.reconciler_probes import store_others
from tests.builders import endpoint_body
from tests.support.server import RunningServer, free_port, simulated_local_server

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import encode_targets
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository

ROUTER = "sglang-router"
TEXT = "I am fine, thank you. How can I help you today? Ask me anything"
BODIES = {  # what each group answers; nginx returns them as they are
    "generate": f'{{"text":"{TEXT}","meta_info":{{"id":"bench","prompt_tokens":8,'
    '"completion_tokens":16,"cached_tokens":0,"finish_reason":{"type":"length","length":16}}}',
    "chat": f'{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
    f'"model":"{NAME}","choices":[{{"index":0,"message":{{"role":"assistant","content":'
    f'"{TEXT}"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":8,'
    '"completion_tokens":16,"total_tokens":24}}',
    "predict": f'{{"request_id":"bench","output":{{"text":"{TEXT}","num_prompt_tokens":8,'
    '"num_completion_tokens":16,"tokens":null}}}}',
}
# forwarder.py's nginx (no daemon or master process, one worker, a prefix of its own) with
# its proxy part replaced by the groups' server blocks.
NGINX_HEAD = PROXY_CONF[: PROXY_CONF.index("  upstream engine")]
NGINX_HTTP = "  keepalive_requests 100000000;\n  default_type application/json;\n"
NGINX_SERVER = """  server {{
    listen 127.0.0.1:{port};
    location = /generate {{ return 200 '{generate}'; }}
    location = /v1/chat/completions {{ return 200 '{chat}'; }}
    location = /predict {{ return 200 '{predict}'; }}
    location ~ ^/(health|health_generate|server_info|model_info|get_server_info|get_model_info)$
      {{ return 200 '{{}}'; }}
    location / {{ return 404 '{{"detail":"not a path this bench answers"}}'; }}
  }}
"""


# --- processes ------------------------------------------------------------------------


@contextmanager
def child(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of the bench's own, stopped (SIGTERM, then SIGKILL) on the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def upstreams(tmp: Path) -> Iterator[tuple[list[str], int]]:
    """One nginx answering as two groups: (their URLs, nginx's pid)."""
    prefix, ports = tmp / "nginx", [free_port(), free_port()]
    prefix.mkdir(parents=True)
    servers = "".join(NGINX_SERVER.format(port=port, **BODIES) for port in ports)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_HEAD.format(prefix=prefix) + NGINX_HTTP + servers + "}\n")
    argv = [_require("nginx"), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    with child(argv, tmp / "nginx.log") as process:
        for port in ports:
            _wait_port(port, process, tmp / "nginx.log")
        yield [f"http://127.0.0.1:{port}" for port in ports], process.pid


@contextmanager
def router(urls: list[str], tmp: Path) -> Iterator[tuple[str, int]]:
    """sglang-router, round robin over `urls`, its metrics on a port of its own (two
    routers on one machine would both want the default 29000)."""
    port = free_port()
    argv = [str(router_python()), "-m", "sglang_router.launch_router", "--host", "127.0.0.1",
            "--port", str(port), "--policy", "round_robin", "--worker-startup-check-interval",
            "1", "--log-level", "warn", "--prometheus-host", "127.0.0.1", "--prometheus-port",
            str(free_port()), "--worker-urls", *urls]  # fmt: skip
    with closed_port() as hf_port:
        env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{hf_port}"}
        with child(argv, tmp / "router.log", env) as process:
            url = f"http://127.0.0.1:{port}"
            path, body = CASES["launch"][ROUTER]
            _wait_answering(url + path, body, {}, process, tmp / "router.log")
            yield url, process.pid


@contextmanager
def gateway(database_url: str, processes: int, tmp: Path) -> Iterator[tuple[str, int]]:
    """`llm-launch gateway --processes N` on `database_url`, once it routes: (URL, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "llm_launch", "gateway", "--port", str(port), "--processes",
            str(processes), "--log-level", "warning", "--database-url", database_url]  # fmt: skip
    log = tmp / f"gateway-{port}.log"
    with child(argv, log, {**os.environ, "LLM_LAUNCH_API_KEYS": f"{OWNER}:{KEY}"}) as process:
        url = f"http://127.0.0.1:{port}"
        path, body = CASES["chat"]["llm-launch"]
        _wait_answering(url + path, body, {"x-api-key": KEY}, process, log)
        yield url, process.pid


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


async def store_routed_endpoint(database_url: str, targets: list[str]) -> None:
    """The endpoint as the reconciler leaves a ready one: READY, its targets stored."""
    engine = open_database(database_url)  # migrates a fresh file first
    repository = EndpointRepository(engine)
    body = endpoint_body(name=NAME, inference_framework="sglang", min_workers=2, max_workers=2)
    endpoint, _ = await repository.create(OWNER, build_spec(body, load_hardware_catalog()))
    await repository.set_status(endpoint.id, EndpointStatus.READY, "ready", available_workers=2)
    await repository.set_targets(endpoint.id, encode_targets(targets))
    await engine.dispose()


# --- part 2's setups ------------------------------------------------------------------


@dataclass
class Setup:
    """One serve with its endpoint and its gateway x2; `others` endpoints stored beside."""

    others: int
    server: RunningServer
    endpoint: Endpoint
    gateway_url: str
    gateway_pid: int
    database: Path


def setup(tmp: Path, ports: str, stack: ExitStack, after_report: AfterReport) -> Setup:
    """A serve with its endpoint READY and a gateway x2 beside it; stopped by `stack`."""
    tmp.mkdir(parents=True)
    env = {"LLM_LAUNCH_API_KEYS": f"{OWNER}:{KEY}", "LLM_LAUNCH_SIM_TTFT_MS": "0",
           "LLM_LAUNCH_SIM_TPOT_MS": "0", "LLM_LAUNCH_LOG_LEVEL": "warning",
           "LLM_LAUNCH_LOCAL_MAX_PROCESSES": "4", "LLM_LAUNCH_LOCAL_PORTS": ports}  # fmt: skip
    server = simulated_local_server(tmp, env).start()
    stack.callback(server.stop)
    survivors: list[int] = []  # the groups' processes, should their delete not finish
    stack.callback(_kill, survivors)
    stack.push(after_report)
    endpoint = stack.enter_context(two_groups(server, tmp))
    survivors += endpoint.engine_pids + endpoint.forwarder_pids
    database = tmp / "db.sqlite"
    url, pid = stack.enter_context(gateway(f"sqlite:///{database}", 2, tmp))
    return Setup(0, server, endpoint, url, pid, database)


@dataclass
class AfterReport:
    """Once the report is out, a delete that fails or does not finish in time (a server
    whose loop is saturated) is said, not raised: the groups' processes are killed."""

    reported: bool = False

    def __call__(self, kind: object, error: BaseException | None, trace: object) -> bool:
        if self.reported and isinstance(error, Exception):
            print(f"cleanup: {error!r:.300}; killing the groups' processes", flush=True)
            return True
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def fill(busy: Setup, others: int) -> None:
    """Store `others` endpoints beside `busy`'s, with its serve stopped (its groups keep
    running; it adopts them on restart): while it reconciles thousands of endpoints its
    writes hold SQLite's lock so long that the fill's own writes time out."""
    busy.server.stop()
    started = time.monotonic()
    asyncio.run(store_others(busy.database, others))
    stored = time.monotonic()
    busy.server.start(timeout=120)
    if not routing(busy.server.url, timeout_s=180):
        raise RuntimeError(
            f"serve does not route its endpoint after its restart:\n{busy.server.log()}"
        )
    busy.others = others
    print(f"part 2, p99: stored {others} others in {stored - started:.0f}s; serve restarted and "
          f"routing after {time.monotonic() - stored:.0f}s", flush=True)  # fmt: skip
    if not routing(busy.gateway_url, timeout_s=30):  # the reconciler keeps its targets
        raise RuntimeError("the gateway does not route the endpoint after serve's restart")


def routing(url: str, timeout_s: float) -> bool:
    """Whether `url` routes the measured endpoint's chat within `timeout_s`."""
    path, body = CASES["chat"]["llm-launch"]
    headers = {"x-api-key": KEY, "content-type": "application/json"}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.post(url + path, content=body, headers=headers, timeout=10)
            if answer.status_code == 200:
                return True
        time.sleep(0.5)
    return False
