"""What the API server's inference routes add on top of the forwarder they route to.

Starts a real `llm-launch serve` (local backend, simulated engine with zero latency),
creates a single-node endpoint, and sends the same Launch sync request N times, one at a
time over keep-alive, to the group's forwarder `/predict` (the baseline) and through the
API's `/v1/llm/completions-sync` (the lean path, api/gateway.py), and the same for OpenAI
chat (`/v1/chat/completions` on the forwarder, `/v2/chat/completions` on the API), the
columns interleaved over several rounds. Prints p50/p99 latency, the API server's CPU per
request (from /proc) and the routed p50 as a multiple of the forwarder's alone.

    .venv/bin/python bench/api_routing.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import endpoint_body
from tests.support.local_groups import forwarder_token, forwarder_url, wait_for
from tests.support.server import simulated_local_server

BODY: dict[str, object] = {"prompt": "Hello there", "max_new_tokens": 4, "temperature": 0.0}
CHAT: dict[str, object] = {
    "model": "bench", "max_tokens": 4, "messages": [{"role": "user", "content": "Hello there"}]
}  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Column:
    """One path measured: where requests go, and what it took, round after round."""

    label: str
    url: str
    params: dict[str, str]
    body: dict[str, object]
    headers: dict[str, str] | None = None
    samples: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def run(self, client: httpx.Client, n: int, pid: int) -> None:
        cpu_before = cpu_seconds(pid)
        for _ in range(n):
            start = time.perf_counter()
            response = client.post(
                self.url, params=self.params, json=self.body, headers=self.headers
            )
            self.samples.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
        self.cpu_s += cpu_seconds(pid) - cpu_before

    def row(self, baseline: Column | None) -> str:
        q = statistics.quantiles(self.samples, n=100)
        cpu = f"{self.cpu_s / len(self.samples) * 1e6:.0f}" if baseline is not None else "-"
        ratio = f"{q[49] / statistics.median(baseline.samples):.2f}x" if baseline else "-"
        return f"{self.label:38} {q[49]:8.2f} {q[98]:8.2f} {cpu:>15} {ratio:>10}"


def measure(client: httpx.Client, columns: list[Column], n: int, rounds: int, pid: int) -> None:
    """Interleaved: every round runs each column in turn (the order rotating), so a load
    spike on the machine lands on all of them, not on one."""
    for column in columns:  # warm-up: connections, pools, the routing table
        for _ in range(50):
            response = client.post(column.url, params=column.params, json=column.body,
                                   headers=column.headers)  # fmt: skip
            response.raise_for_status()
    per_round = max(1, n // rounds)
    for r in range(rounds):
        for column in columns[r % len(columns) :] + columns[: r % len(columns)]:
            column.run(client, per_round, pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = {"LLM_LAUNCH_API_KEYS": "", "LLM_LAUNCH_SIM_TTFT_MS": "0",
               "LLM_LAUNCH_SIM_TPOT_MS": "0", "LLM_LAUNCH_LOG_LEVEL": "warning"}  # fmt: skip
        server = simulated_local_server(data_dir, env).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                body = endpoint_body(name="bench", inference_framework="sglang", min_workers=1)
                client.post("/v1/llm/model-endpoints", json=body).raise_for_status()
                endpoint = wait_for(client, "bench", lambda e: e["status"] == "READY")
                forwarder = forwarder_url(data_dir, str(endpoint["id"]))
                assert forwarder is not None
                assert server.pid is not None
                # The forwarder answers only its endpoint's token (the API sends it).
                token = forwarder_token(data_dir / "db.sqlite", str(endpoint["id"]))
                auth = {"Authorization": f"Bearer {token}"}
                query = {"model_endpoint_name": "bench"}
                columns = [
                    Column("forwarder /predict (baseline)", f"{forwarder}/predict", {}, BODY, auth),
                    Column("API /v1/llm/completions-sync", "/v1/llm/completions-sync", query, BODY),
                    Column("forwarder /v1/chat/completions", f"{forwarder}/v1/chat/completions",
                           {}, CHAT, auth),
                    Column("API /v2/chat/completions", "/v2/chat/completions", {}, CHAT),
                ]  # fmt: skip
                measure(client, columns, args.requests, args.rounds, server.pid)
                client.delete("/v1/llm/model-endpoints/bench")
        finally:
            server.stop()
    print(f"{args.requests} sequential requests per path over {args.rounds} interleaved rounds")
    print(f"{'path':38} {'p50 ms':>8} {'p99 ms':>8} {'API CPU µs/req':>15} {'p50 ratio':>10}")
    for baseline, routed in ((columns[0], columns[1]), (columns[2], columns[3])):
        print(baseline.row(None))
        print(routed.row(baseline))


if __name__ == "__main__":
    main()
