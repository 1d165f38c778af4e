"""Leader election of control-plane replicas over a coordination.k8s.io/v1 Lease
(backends/kubernetes/leader.py), with the real client against the test API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.leader import LeaderElector, LeaseSettings
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import CATALOG, FAST, eventually
from tests.integration.kubernetes.test_backend import (
    LWS,
    controller_reports,
    multinode,
    put_group,
)

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
