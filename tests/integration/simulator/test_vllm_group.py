"""A simulated vLLM multi-node group follows its plan: the startup program of each rank runs
the plan's own commands (Ray head, `ray start --address ... --block`, `vllm serve ...
--tensor-parallel-size 8 --pipeline-parallel-size 2 --distributed-executor-backend ray`)
with `vllm` and `ray` replaced by the simulator's, and the leader serves only once every
node has joined its Ray cluster. Real processes on loopback, as the local backend runs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_launch.domain.progress import PROGRESS_FILE_ENV
from tests.integration.simulator.processes import free_port, wait_until

STARTUP = [sys.executable, "-m", "llm_launch.runtime.startup"]


class Group:
    """Two ranks of a vLLM endpoint with gpus=8 and nodes_per_worker=2, on 127.0.0.1."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.dist_port = free_port("127.0.0.1")
        self.engine_ports = [free_port("127.0.0.1"), free_port("127.0.0.1")]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, rank: int) -> subprocess.Popen[bytes]:
        argv = [
            *STARTUP, "vllm", "--role", "leader" if rank == 0 else "worker",
            "--nnodes", "2", "--tp-size", "8", "--pp-size", "2",
            "--engine-port", str(self.engine_ports[rank]), "--dist-port", str(self.dist_port),
            "--model=llama", "--served-model-name=llama", "--ip-family", "ipv4",
            "--bind-host", "127.0.0.1", "--weights-dir", str(self.dir / "weights"),
            "--", "--sim-ttft-ms", "1", "--sim-tpot-ms", "1",
        ]  # fmt: skip
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LWS_", "LLM_LAUNCH"))}
        env = {
            **clean,
            "LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": "2",
            "LWS_WORKER_INDEX": str(rank), "LLM_LAUNCH_WORKER_ADDRESSES": "127.0.0.1",
            "POD_IP": "127.0.0.1", "LLM_LAUNCH_ENGINE_MODE": "simulated",
            PROGRESS_FILE_ENV: str(self.dir / f"rank-{rank}.progress.json"),
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        with (self.dir / f"rank-{rank}.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[rank] = process
        return process

    def report(self, rank: int) -> dict[str, Any] | None:
        try:
            report: dict[str, Any] = json.loads(
                (self.dir / f"rank-{rank}.progress.json").read_text()
            )
        except (OSError, ValueError):
            return None
        return report

    def log(self, rank: int) -> str:
        return (self.dir / f"rank-{rank}.log").read_text(errors="replace")

    def leader_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_ports[0]}"

    def serving(self) -> bool:
        try:
            return httpx.get(f"{self.leader_url()}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for process in self.processes.values():  # each rank's session: the Ray head too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    running = Group(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_a_missing_worker_keeps_the_leader_from_serving_until_it_joins(group: Group) -> None:
    group.start(0)
    wait_until(
        lambda: (group.report(0) or {}).get("detail") == "1 of 2 Ray nodes joined",
        60,
        f"the leader's Ray head alone\n{group.log(0)}",
    )
    assert not group.serving()  # the head is up, the worker is not: vLLM does not serve

    group.start(1)
    wait_until(group.serving, 60, f"the leader serving\n{group.log(0)}\n{group.log(1)}")
    assert (group.report(0) or {}).get("phase") == "starting-engine"
    completion = httpx.post(
        f"{group.leader_url()}/v1/completions",
        json={"model": "llama", "prompt": "Hello", "max_tokens": 3},
        timeout=10,
    )
    assert completion.status_code == 200, completion.text
    info = httpx.get(f"{group.leader_url()}/get_server_info", timeout=5).json()
    assert info["group"]["state"] == "formed" and info["group"]["placed_on_nodes"] == [0, 1]


def test_each_rank_runs_the_vllm_plans_own_argv(group: Group) -> None:
    leader, worker = group.start(0), group.start(1)
    wait_until(group.serving, 60, f"the leader serving\n{group.log(0)}\n{group.log(1)}")
    # The startup program exec'd its engine: the same processes now run the plan's argv.
    served = cmdline(leader.pid)
    assert served[1:6] == ["-m", "llm_launch.simulator", "vllm", "serve", "llama"]
    assert flag(served, "--tensor-parallel-size") == "8"
    assert flag(served, "--pipeline-parallel-size") == "2"
    assert flag(served, "--distributed-executor-backend") == "ray"
    joined = cmdline(worker.pid)
    assert joined[1:6] == ["-m", "llm_launch.simulator", "ray", "start", "--address"]
    assert flag(joined, "--address") == f"127.0.0.1:{group.dist_port}"
    assert "--block" in joined
    assert "ray start" in group.log(0) or '"ray", "start", "--head"' in group.log(0)


def test_the_leader_stops_serving_for_good_when_a_worker_node_dies(group: Group) -> None:
    leader, worker = group.start(0), group.start(1)
    wait_until(group.serving, 60, f"the leader serving\n{group.log(0)}\n{group.log(1)}")
    os.killpg(worker.pid, signal.SIGKILL)
    assert leader.wait(timeout=30) == 1  # vLLM's engine dies with its Ray workers
    assert "Ray node 1 at 127.0.0.1 died" in group.log(0)
