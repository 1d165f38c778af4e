"""How long after its leader passes the generation check does an endpoint turn READY?

Target (DESIGN.md section 5): within 2 s. Starts a real `llm-launch serve` (local backend,
simulated engine), creates the runbook's two-node endpoint, and polls, side by side, the
group's forwarder `/readyz` (the generation check itself: the baseline moment) and the
API's status. Prints, per run, the delay from the first passing check to READY.

    .venv/bin/python bench/ready_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import seed_body
from tests.support.local_groups import forwarder_url
from tests.support.server import simulated_local_server

POLL_S = 0.01


def one_run(client: httpx.Client, data_dir: Path, name: str) -> float:
    client.post("/v1/llm/model-endpoints", json=seed_body(name=name)).raise_for_status()
    endpoint_id = client.get(f"/v1/llm/model-endpoints/{name}").json()["id"]
    checked_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        url = forwarder_url(data_dir, endpoint_id)
        if checked_at is None and url is not None:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    checked_at = time.monotonic()
            except httpx.HTTPError:
                pass
        status = client.get(f"/v1/llm/model-endpoints/{name}").json()["status"]
        if status == "READY":
            ready_at = time.monotonic()
            client.delete(f"/v1/llm/model-endpoints/{name}").raise_for_status()
            return ready_at - (checked_at or ready_at)
        time.sleep(POLL_S)
    raise RuntimeError(f"{name} did not become READY")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        server = simulated_local_server(data_dir, {"LLM_LAUNCH_API_KEYS": ""}).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                delays = [one_run(client, data_dir, f"r1-{run}") for run in range(args.runs)]
        finally:
            server.stop()
    print(f"{'run':>4} {'check passed -> READY (s)':>26}")
    for run, delay in enumerate(delays):
        print(f"{run:>4} {delay:26.3f}")
    worst = max(delays)
    print(
        f"median {statistics.median(delays):.3f} s, worst {worst:.3f} s; target 2 s: "
        f"{'met' if worst <= 2 else 'MISSED'} (worst/target = {worst / 2:.2f})"
    )


if __name__ == "__main__":
    main()
