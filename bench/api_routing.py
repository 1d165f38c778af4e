"""What the API server's inference routes add on top of the forwarder they route to.

Starts a real `llm-launch serve` (local backend, simulated engine with zero latency),
creates a single-node endpoint, and sends the same Launch sync request N times, one at a
time over keep-alive, to the group's forwarder `/predict` (the baseline) and through the
API's `/v1/llm/completions-sync`. Prints p50/p99 latency, the API server's CPU per request
(from /proc), and the ratios.

    .venv/bin/python bench/api_routing.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import endpoint_body
from tests.support.local_groups import forwarder_token, forwarder_url, wait_for
from tests.support.server import simulated_local_server

BODY = {"prompt": "Hello there", "max_new_tokens": 4, "temperature": 0.0}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(
    client: httpx.Client,
    url: str,
    params: dict[str, str],
    n: int,
    pid: int,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    for _ in range(50):
        client.post(url, params=params, json=BODY, headers=headers).raise_for_status()
    samples = []
    cpu_before = cpu_seconds(pid)
    for _ in range(n):
        start = time.perf_counter()
        client.post(url, params=params, json=BODY, headers=headers).raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
    cpu = (cpu_seconds(pid) - cpu_before) / n * 1e6
    quantiles = statistics.quantiles(samples, n=100)
    return {"p50": quantiles[49], "p99": quantiles[98], "api_cpu_us": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
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
                direct = measure(
                    client, f"{forwarder}/predict", {}, args.requests, server.pid,
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
                params = {"model_endpoint_name": "bench"}
                routed = measure(
                    client, "/v1/llm/completions-sync", params, args.requests, server.pid
                )
                client.delete("/v1/llm/model-endpoints/bench")
        finally:
            server.stop()
    print(f"{'path':38} {'p50 ms':>8} {'p99 ms':>8} {'API CPU µs/req':>15}")
    print(
        f"{'forwarder /predict (baseline)':38} {direct['p50']:8.2f} {direct['p99']:8.2f} {'-':>15}"
    )
    print(
        f"{'API /v1/llm/completions-sync':38} {routed['p50']:8.2f} {routed['p99']:8.2f} "
        f"{routed['api_cpu_us']:15.0f}"
    )
    print(
        f"added by the API hop: p50 +{routed['p50'] - direct['p50']:.2f} ms "
        f"({routed['p50'] / direct['p50']:.2f}x the forwarder alone)"
    )


if __name__ == "__main__":
    main()
