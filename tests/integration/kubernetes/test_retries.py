"""Failed applies against the local API server: transient errors keep the observed status
and back off; permanent ones fail the generation once and are not retried until it changes.

Passes are driven by hand with a fake clock (the reconciler calls apply then observe about
twice a second), so request counts over a stretch of fake time are exact, not timed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_launch.backends.base import Observation
from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.retry import RetryTiming
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.status import EndpointStatus
from tests.builders import seed_body
from tests.fakes.kube_api import FakeKubeApi, lws_pod
from tests.integration.kubernetes.conftest import CATALOG, FAST, an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
PASS_S = 0.5  # the reconciler's interval
RETRY = RetryTiming(initial_s=1.0, max_s=300.0, permanent_s=1800.0, jitter=0.2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def backend(kubeconfig: Path, clock: Clock) -> AsyncIterator[KubernetesBackend]:
    config = KubernetesConfig(namespace="default", catalog=CATALOG)
    timing = dataclasses.replace(FAST, resync_s=600.0, retry=RETRY)
    running = KubernetesBackend(config, str(kubeconfig), timing=timing, clock=clock)
    try:
        yield running
    finally:
        await running.close()


def multinode(generation: int = 1) -> Endpoint:
    return an_endpoint(seed_body(), endpoint_id="ep-retry", generation=generation)


async def passes(
    backend: KubernetesBackend, endpoint: Endpoint, clock: Clock, count: int
) -> Observation:
    """`count` reconcile passes, PASS_S of fake time apart; the last observation."""
    seen = None
    for _ in range(count):
        await backend.apply(endpoint)
        seen = await backend.observe(endpoint)
        clock.now += PASS_S
    assert seen is not None
    return seen


def patches(kube_api: FakeKubeApi, plural: str) -> int:
    return len([r for r in kube_api.writes(plural) if r.method == "PATCH"])


async def serving(backend: KubernetesBackend, kube_api: FakeKubeApi, endpoint: Endpoint) -> None:
    """Apply, then play the LWS controller and kubelet until the endpoint is READY."""
    await backend.apply(endpoint)
    lws = kube_api.get("leaderworkersets", LWS)
    assert lws is not None
    for rank in (0, 1):
        uid = lws["metadata"]["uid"]
        kube_api.put("pods", lws_pod(LWS, 0, rank, endpoint.id, owner_uid=uid, ready=True))
    status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    kube_api.set_status("leaderworkersets", LWS, status)
    await eventually(
        lambda: backend.observe(endpoint), lambda seen: seen.status is EndpointStatus.READY
    )


async def test_a_422_fails_its_generation_once_quoting_the_field_until_the_spec_changes(
    backend: KubernetesBackend, kube_api: FakeKubeApi, clock: Clock
) -> None:
    cause = {"reason": "FieldValueInvalid", "field": "spec.leaderWorkerTemplate.size",
             "message": "Invalid value: 0: must be greater than or equal to 1"}  # fmt: skip
    kube_api.fail_next(
        "PATCH", "leaderworkersets", 422, "Invalid", "LeaderWorkerSet is invalid", [cause], 1000
    )
    seen = await passes(backend, multinode(), clock, 40)  # 20 s of passes
    assert patches(kube_api, "leaderworkersets") == 1
    assert seen.status is EndpointStatus.UPDATE_FAILED
    reason = seen.reason or ""
    assert "refused generation 1" in reason
    assert "spec.leaderWorkerTemplate.size" in reason and "greater than or equal to 1" in reason
    clock.now += RETRY.permanent_s  # then tried again, rarely (RBAC or a CRD may be fixed)
    await passes(backend, multinode(), clock, 10)
    assert patches(kube_api, "leaderworkersets") == 2
    kube_api.clear_failures()
    applied = await passes(backend, multinode(generation=2), clock, 1)  # a new spec: at once
    assert patches(kube_api, "leaderworkersets") == 3
    assert "refused" not in (applied.reason or "")


async def test_a_503_at_resync_keeps_ready_and_its_workers_and_retries_with_backoff(
    backend: KubernetesBackend, kube_api: FakeKubeApi, clock: Clock
) -> None:
    endpoint = multinode()
    await serving(backend, kube_api, endpoint)
    before = patches(kube_api, "secrets")
    kube_api.fail_next("PATCH", "secrets", 503, "ServiceUnavailable", "etcd is down", times=1000)
    clock.now += 600.0  # the slow periodic resync comes round
    seen = await passes(backend, endpoint, clock, 60)  # 30 s of passes, all failing
    assert seen.status is EndpointStatus.READY
    assert (seen.available_workers, seen.unavailable_workers) == (1, 0)
    reason = seen.reason or ""
    assert "cannot be reached" in reason and "etcd is down" in reason
    # Backoff 1, 2, 4, 8, 16 s (each x0.8 at least): at most 6 attempts in 30 s, not 60.
    attempts = patches(kube_api, "secrets") - before
    assert 3 <= attempts <= 6, attempts
    kube_api.clear_failures()
    clock.now += RETRY.max_s
    recovered = await passes(backend, endpoint, clock, 1)
    assert (recovered.status, recovered.reason) == (EndpointStatus.READY, "ready")


async def test_a_429_is_transient_and_an_unchanged_endpoint_is_not_patched_every_pass(
    backend: KubernetesBackend, kube_api: FakeKubeApi, clock: Clock
) -> None:
    kube_api.fail_next("PATCH", "secrets", 429, "TooManyRequests", "slow down", times=2)
    first = await passes(backend, multinode(), clock, 1)
    assert first.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert "cannot be reached" in (first.reason or "") and "429" in (first.reason or "")
    await passes(backend, multinode(), clock, 40)  # retried after backoff, then applied
    assert kube_api.names("leaderworkersets") == [LWS]
    writes = len(kube_api.writes())
    await passes(backend, multinode(), clock, 200)  # 100 s: nothing changed, nothing written
    assert len(kube_api.writes()) == writes


async def test_backoff_is_per_endpoint(
    backend: KubernetesBackend, kube_api: FakeKubeApi, clock: Clock
) -> None:
    kube_api.fail_next("PATCH", "secrets", 503, "ServiceUnavailable", "etcd is down", times=1)
    await passes(backend, multinode(), clock, 1)  # this one now waits its backoff
    other = an_endpoint(seed_body(name="other"), endpoint_id="ep-other")
    await passes(backend, other, clock, 1)
    assert kube_api.names("leaderworkersets") == [k8s_name("other")]
