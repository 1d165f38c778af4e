"""Fixtures: a local Kubernetes API server, a kubeconfig for it, the real client, the backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend, KubernetesTiming
from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.watch import WatchTiming
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.fakes.kube_api import FakeKubeApi

CATALOG = load_hardware_catalog()
FAST = KubernetesTiming(
    delete_timeout_s=5.0,
    delete_poll_s=0.05,
    sync_wait_s=5.0,
    missing_grace_s=0.5,
    watch=WatchTiming(stream_timeout_s=5, backoff_initial_s=0.05, backoff_max_s=0.2),
)
T = TypeVar("T")


@pytest.fixture
def kubeconfig(kube_api: FakeKubeApi, tmp_path: Path) -> Path:
    return kube_api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def client(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(str(kubeconfig), request_timeout_s=5.0)
    try:
        yield kube
    finally:
        await kube.close()


@pytest.fixture
async def backend(kubeconfig: Path) -> AsyncIterator[KubernetesBackend]:
    config = KubernetesConfig(namespace="default", catalog=CATALOG)
    running = KubernetesBackend(config, str(kubeconfig), timing=FAST)
    try:
        yield running
    finally:
        await running.close()


def an_endpoint(body: dict[str, Any], *, endpoint_id: str, generation: int = 1) -> Endpoint:
    now = datetime.now(UTC)
    return Endpoint(
        id=endpoint_id,
        owner="alice",
        spec=build_spec(body, CATALOG),
        status=EndpointStatus.UPDATE_PENDING,
        status_reason=None,
        generation=generation,
        created_at=now,
        last_updated_at=now,
        forwarder_token=f"token-of-{endpoint_id}",
    )


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout_s: float = 5.0
) -> T:
    """Poll `probe` until `check` holds on its result; fail with the last result."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await probe()
        if check(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s; last: {result!r}")
        await asyncio.sleep(0.02)
