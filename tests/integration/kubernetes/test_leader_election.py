"""Leader election of control-plane replicas over a coordination.k8s.io/v1 Lease
(backends/kubernetes/leader.py), with the real client against the test API server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.leader import LeaderElector, LeaseSettings
from tests.builders import seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import CATALOG, FAST, eventually
from tests.integration.kubernetes.test_backend import (
    LWS,
    controller_reports,
    multinode,
    put_group,
)
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer
from tests.unit.kubernetes import k8s_name

LEASE = "llm-launch-test"


def settings(identity: str) -> LeaseSettings:
    return LeaseSettings(
        namespace="default",
        name=LEASE,
        identity=identity,
        duration_s=2,
        renew_deadline_s=1.5,
        retry_period_s=0.2,
    )


class Candidate:
    """One replica's elector, running a `lead` that records whether it runs."""

    def __init__(self, client: KubeClient, identity: str) -> None:
        self.elector = LeaderElector(client, settings(identity))
        self.leading = False
        self.terms = 0
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.leading, self.terms = True, self.terms + 1
        try:
            await asyncio.Event().wait()
        finally:
            self.leading = False

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self._lead))
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def clients(kubeconfig: Path) -> AsyncIterator[list[KubeClient]]:
    made = [await KubeClient.connect(str(kubeconfig), request_timeout_s=5.0) for _ in range(2)]
    try:
        yield made
    finally:
        for client in made:
            await client.close()


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async def probe() -> bool:
        await asyncio.sleep(0.05)
        return check()

    await eventually(probe, lambda held: held, timeout_s)


async def test_of_two_candidates_exactly_one_leads_while_its_lease_is_renewed(
    clients: list[KubeClient], kube_api: FakeKubeApi
) -> None:
    a, b = Candidate(clients[0], "replica-a").start(), Candidate(clients[1], "replica-b").start()
    try:
        await until(lambda: a.leading or b.leading)
        leader, follower = (a, b) if a.leading else (b, a)
        # Several lease durations go by: the holder renews, so the other never takes over.
        for _ in range(3 * 2 * 10):
            await asyncio.sleep(0.1)
            assert leader.leading and not follower.leading
        lease = kube_api.get("leases", LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == leader.elector.settings.identity
        assert lease["spec"]["leaseDurationSeconds"] == 2
        assert lease["spec"]["leaseTransitions"] == 0
        assert lease["spec"]["renewTime"] > lease["spec"]["acquireTime"]
    finally:
        await a.stop()
        await b.stop()


async def test_a_stopping_leader_releases_the_lease_and_the_other_candidate_takes_over(
    clients: list[KubeClient], kube_api: FakeKubeApi
) -> None:
    a = Candidate(clients[0], "replica-a").start()
    await until(lambda: a.leading)
    b = Candidate(clients[1], "replica-b").start()
    try:
        await a.stop()
        assert not a.leading
        await until(lambda: b.leading)
        lease = kube_api.get("leases", LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        await b.stop()


async def test_a_leader_that_cannot_renew_stops_leading_and_another_takes_over(
    clients: list[KubeClient], kube_api: FakeKubeApi
) -> None:
    a = Candidate(clients[0], "replica-a").start()
    await until(lambda: a.leading)
    b = Candidate(clients[1], "replica-b").start()
    try:
        # Every update of the Lease fails for a while (an API server in trouble): the
        # holder gives up after its renew deadline, before the lease runs out for others.
        kube_api.fail_next("PUT", "leases", 500, "InternalError", "etcd is slow", times=15)
        await until(lambda: not a.leading)
        kube_api.clear_failures()
        await until(lambda: a.leading or b.leading)
        assert not (a.leading and b.leading)
    finally:
        await a.stop()
        await b.stop()


def test_timings_that_would_let_two_replicas_lead_at_once_are_refused() -> None:
    assert LeaseSettings("default", identity="a").problems() == []  # 15 s / 10 s / 2 s
    assert LeaseSettings("default", identity="a", duration_s=10).problems() == [
        "the lease duration must be longer than the renew deadline"
    ]
    assert LeaseSettings(
        "default", identity="a", renew_deadline_s=2.0, retry_period_s=2.0
    ).problems() == ["the renew deadline must be longer than 1.2 x the retry period"]


async def test_a_follower_that_never_reconciles_still_routes_to_ready_groups(
    backend: KubernetesBackend, kube_api: FakeKubeApi, kubeconfig: Path
) -> None:
    endpoint = multinode()
    await backend.apply(endpoint)  # the leader applies
    follower = KubernetesBackend(
        KubernetesConfig(namespace="default", catalog=CATALOG), str(kubeconfig), timing=FAST
    )
    try:
        await follower.elector(settings("follower"))  # what app.py does on every replica
        put_group(kube_api, endpoint, 0, ready=True)
        controller_reports(kube_api, ready=1)
        await until(lambda: follower.targets(endpoint) == [f"http://{LWS}-leader.default.svc"])
    finally:
        await follower.close()


# -- two real servers, one PostgreSQL, one API server ---------------------------------

KEY = "alice-key-0123456789abcdef"
LEADS = "leads (lease"


def start_replicas(kube_api: FakeKubeApi, url: str, tmp_path: Path) -> list[RunningServer]:
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
        "LLM_LAUNCH_BACKEND": "kubernetes",
        "LLM_LAUNCH_KUBERNETES_NAMESPACE": "default",
        "KUBECONFIG": str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")),
        "LLM_LAUNCH_LEADER_LEASE_DURATION_S": "2",
        "LLM_LAUNCH_LEADER_RENEW_DEADLINE_S": "1.5",
        "LLM_LAUNCH_LEADER_RETRY_PERIOD_S": "0.2",
    }
    replicas = []
    for name in ("replica-0", "replica-1"):
        (tmp_path / name).mkdir()
        replicas.append(RunningServer(url, tmp_path / name, {**env, "POD_NAME": name}))
    return [replica.start() for replica in replicas]


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def applied(replica: RunningServer, name: str) -> list[str]:
    """The replica's log lines saying it applied the endpoint `name`."""
    lines = replica.log().splitlines()
    return [line for line in lines if f"applied {name} generation" in line]


def answered(replica: RunningServer) -> tuple[int, int, str]:
    """The API's list, and the inference route with its body, as a client of this replica
    sees them."""
    headers = {"x-api-key": KEY}
    with httpx.Client(base_url=replica.url, headers=headers, timeout=30) as http:
        listed = http.get("/v1/llm/model-endpoints").status_code
        chat = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "hi"}]}
        inferred = http.post("/v2/chat/completions", json=chat)
    return listed, inferred.status_code, inferred.text


def settled_answers(replica: RunningServer, timeout_s: float = 10.0) -> tuple[int, int]:
    """The two answers once the replica's routing table has seen the endpoint: an endpoint created
    through another replica reaches this one's table within its refresh (1 s), and is a
    404 here until then. The last answer's body goes into the failure message."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed, inferred, body = answered(replica)
        if inferred != 404 or time.monotonic() > deadline:
            assert inferred != 404, body
            return listed, inferred
        time.sleep(0.2)


def test_two_servers_exactly_one_reconciles_and_the_other_takes_over_when_it_is_killed(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    with fresh_postgres_database() as url:
        replicas = start_replicas(kube_api, url, tmp_path)
        try:
            wait_for(lambda: any(LEADS in r.log() for r in replicas), "a replica leads")
            leader, follower = replicas if LEADS in replicas[0].log() else replicas[::-1]
            with httpx.Client(base_url=follower.url, headers={"x-api-key": KEY}) as http:
                created = http.post("/v1/llm/model-endpoints", json=seed_body())
                assert created.status_code == 200, created.text
            wait_for(lambda: kube_api.names("leaderworkersets") == [LWS], "the LWS is applied")
            wait_for(lambda: bool(applied(leader, "deepseek-r1")), "the leader logs its apply")
            assert LEADS not in follower.log() and applied(follower, "deepseek-r1") == []
            # Both serve the API and the inference route (no group is ready: both say so).
            assert settled_answers(leader) == settled_answers(follower) == (200, 503)

            os.kill(leader.pid or 0, signal.SIGKILL)  # no release: the lease must run out
            wait_for(lambda: LEADS in follower.log(), "the follower takes over")
            lease = kube_api.get("leases", "llm-launch-default")
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == follower.log_path.parent.name
            assert lease["spec"]["leaseTransitions"] == 1
            # Nothing is lost: the new leader reconciles the endpoint (and applies it once,
            # only after it leads), and a new one created now is applied too.
            wait_for(lambda: bool(applied(follower, "deepseek-r1")), "the new leader applies")
            before, _, _ = follower.log().partition(LEADS)
            assert "applied deepseek-r1" not in before
            with httpx.Client(base_url=follower.url, headers={"x-api-key": KEY}) as http:
                later = http.post("/v1/llm/model-endpoints", json=seed_body(name="later"))
                assert later.status_code == 200, later.text
            wait_for(lambda: bool(applied(follower, "later")), "a later endpoint is applied")
            assert kube_api.names("leaderworkersets") == sorted([LWS, k8s_name("later")])
            assert settled_answers(follower) == (200, 503)
        finally:
            for replica in replicas:
                replica.stop()


def test_sqlite_is_refused_for_the_kubernetes_backend_inside_a_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env |= {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",  # what the kubelet sets in every container
        "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
        "LLM_LAUNCH_BACKEND": "kubernetes",
    }
    command = [sys.executable, "-m", "llm_launch", "serve", "--data-dir", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    said = " ".join(result.stderr.split())
    assert "refusing SQLite with --backend kubernetes inside a cluster" in said
    assert "PostgreSQL database that every replica shares" in said
