"""The startup program across real addresses: each pod of a 2-node group in its own network
namespace, with its own IPv6 address and LWS-style names in its own hosts file.

The real `llm-launch-startup` runs from the seed plan's leader and worker commands, with a
probe (tests/support/rendezvous_probe.py) as the engine: the leader's probe listens on the
`--dist-init-addr` it was given and the worker's connects to it from the other namespace.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_launch.engines.plan import LaunchPlan
from tests.builders import seed_body
from tests.support.netns import NetnsGroup, netns_unavailable_reason
from tests.support.startup import Pod, engine_container, plan_for, startup_argv

pytestmark = pytest.mark.timeout(60)

PROBE = Path(__file__).resolve().parents[1] / "support" / "rendezvous_probe.py"
LEADER_NAME = "llm-r1-0.llm-r1.default"  # LWS_LEADER_ADDRESS: <lws>-<group>.<subdomain>.<ns>
WORKER_NAME = "llm-r1-0-1.llm-r1.default"  # the leader's pod name + "-1", same subdomain
ERROR_PREFIX = "llm-launch-startup: error: "


@pytest.fixture(scope="module")
def netns_permitted() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def group(netns_permitted: None) -> Iterator[NetnsGroup]:
    with NetnsGroup() as netns:
        yield netns


class Cluster:
    """The seed's group (leader + one worker), each pod in its namespace. Its checkpoint is
    a local directory (used in place), so the startup's weights step has nothing to fetch."""

    def __init__(self, netns: NetnsGroup, out: Path) -> None:
        self.netns = netns
        self.out = out
        self.checkpoint = out / "DeepSeek-R1"
        self.checkpoint.mkdir()
        (self.checkpoint / "config.json").write_text("{}")
        body = seed_body()
        body["metadata"]["_llm"]["checkpoint_path"] = f"file://{self.checkpoint}"
        self.plan: LaunchPlan = plan_for(body)
        assert self.plan.nodes == 2
        self.leader = netns.add_pod("leader", LEADER_NAME)
        self.worker = netns.add_pod("w1", WORKER_NAME)
        self.logs: dict[str, Path] = {}

    def start(self, role: str, *options: str) -> subprocess.Popen[bytes]:
        """The plan's startup command for `role`, in that pod, with the probe as engine."""
        pod = self.leader if role == "leader" else self.worker
        container = engine_container(self.plan, role)
        engine = shlex.join([sys.executable, str(PROBE)])
        argv = startup_argv(container.command, "--engine-program", engine, *options)
        lws = Pod(pod.ip, LEADER_NAME, 0 if role == "leader" else 1, self.plan.nodes)
        env = lws.env(container, PROBE_OUT_DIR=str(self.out), PROBE_TIMEOUT_S="15",
                      LLM_LAUNCH_PROGRESS_FILE=str(self.out / f"{role}.progress.json"))  # fmt: skip
        self.logs[role] = self.out / f"{role}.log"
        with self.logs[role].open("wb") as log:
            return self.netns.popen(pod, argv, env, log)

    def log(self, role: str) -> str:
        return self.logs[role].read_text(errors="replace")

    def report(self, rank: int, stage: str) -> dict[str, Any] | None:
        path = self.out / f"rank-{rank}.{stage}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def errors(self, role: str) -> list[str]:
        return [line for line in self.log(role).splitlines() if line.startswith(ERROR_PREFIX)]


@pytest.fixture
def cluster(group: NetnsGroup, tmp_path: Path) -> Cluster:
    return Cluster(group, tmp_path)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finish(process: subprocess.Popen[bytes], cluster: Cluster, role: str) -> int:
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{role} still running:\n{cluster.log(role)}") from None


def test_each_pod_gets_its_own_address_and_they_rendezvous_at_the_bracketed_leader_address(
    cluster: Cluster,
) -> None:
    both = [cluster.leader, cluster.worker]
    cluster.netns.set_hosts(cluster.leader, both)
    cluster.netns.set_hosts(cluster.worker, both)
    worker = cluster.start("worker")
    leader = cluster.start("leader")
    assert finish(leader, cluster, "leader") == 0, cluster.log("leader")
    assert finish(worker, cluster, "worker") == 0, cluster.log("worker")

    leader_ip, worker_ip = cluster.leader.ip, cluster.worker.ip
    assert leader_ip.startswith("fdab:") and leader_ip != worker_ip
    lead, work = cluster.report(0, "done"), cluster.report(1, "done")
    assert lead is not None and work is not None
    assert lead["SGLANG_HOST_IP"] == leader_ip  # the leader's: the leader pod's IP
    assert work["SGLANG_HOST_IP"] == worker_ip  # a worker's: its own pod IP
    assert leader_ip in lead["addresses"] and worker_ip not in lead["addresses"]
    assert worker_ip in work["addresses"] and leader_ip not in work["addresses"]
    for report, rank in ((lead, "0"), (work, "1")):
        argv = report["argv"]
        assert argv[argv.index("--dist-init-addr") + 1] == f"[{leader_ip}]:5002"
        assert argv[argv.index("--host") + 1] == "::"
        assert argv[argv.index("--port") + 1] == "5005"
        assert argv[argv.index("--model-path") + 1] == str(cluster.checkpoint)
        assert argv[argv.index("--nnodes") + 1] == "2"
        assert argv[argv.index("--node-rank") + 1] == rank
    # The worker reached the leader's rendezvous port across namespaces, from its own IP.
    assert lead["rendezvous"] == {"peer": worker_ip, "said": f"hello from rank 1 at {worker_ip}"}
    assert work["rendezvous"] == {"local": worker_ip, "reply": "welcome from rank 0"}


def test_the_leader_holds_back_until_its_workers_name_resolves(cluster: Cluster) -> None:
    cluster.netns.set_hosts(cluster.leader, [cluster.leader])  # the worker is not scheduled
    cluster.netns.set_hosts(cluster.worker, [cluster.leader, cluster.worker])
    leader = cluster.start("leader", "--worker-wait-timeout", "30")
    wait_until(lambda: "waiting for 1 worker(s)" in cluster.log("leader"), 10, "the wait")
    time.sleep(2.5)  # longer than the startup's 2 s poll: it has looked again, and waits on
    assert leader.poll() is None, cluster.log("leader")
    assert cluster.report(0, "started") is None, "the engine started before its worker"

    cluster.netns.set_hosts(cluster.leader, [cluster.leader, cluster.worker])  # scheduled
    added = time.time()
    started = wait_until(lambda: cluster.report(0, "started"), 6, "the leader's engine")
    assert started["started_at"] - added < 5
    assert f"worker {WORKER_NAME} is scheduled" in cluster.log("leader")
    worker = cluster.start("worker")
    assert finish(leader, cluster, "leader") == 0, cluster.log("leader")
    assert finish(worker, cluster, "worker") == 0, cluster.log("worker")


def test_the_leader_fails_with_a_one_line_reason_when_its_worker_never_appears(
    cluster: Cluster,
) -> None:
    cluster.netns.set_hosts(cluster.leader, [cluster.leader])
    leader = cluster.start("leader", "--worker-wait-timeout", "2")
    assert finish(leader, cluster, "leader") == 1
    assert cluster.errors("leader") == [
        f"{ERROR_PREFIX}workers not scheduled within 2s: {WORKER_NAME} did not resolve; "
        "check that the group's pods are not Pending"
    ]
    assert cluster.report(0, "started") is None


@pytest.mark.parametrize("role", ["leader", "worker"])
def test_a_pod_fails_with_a_one_line_reason_when_the_leaders_name_never_resolves(
    cluster: Cluster, role: str
) -> None:
    pod = cluster.leader if role == "leader" else cluster.worker
    cluster.netns.set_hosts(pod, [cluster.worker])  # everything but the leader's name
    process = cluster.start(role, "--resolve-timeout", "2")
    assert finish(process, cluster, role) == 1
    (error,) = cluster.errors(role)
    assert error.startswith(
        f"{ERROR_PREFIX}leader address {LEADER_NAME!r} did not resolve within 2s"
    )
    assert cluster.report(0 if role == "leader" else 1, "started") is None
