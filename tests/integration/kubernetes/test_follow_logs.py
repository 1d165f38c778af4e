"""`GET .../logs?follow=true` on Kubernetes: the pod log API's own follow, through the
backend, against the test API server (the tail, then what the container writes, until
the pod goes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.domain.errors import NotFound
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.test_backend import LWS, multinode, put_group

WAIT_S = 30


async def next_text(chunks: AsyncIterator[bytes], wanted: str) -> str:
    """What the stream sends until it has sent `wanted`."""
    received = ""
    async with asyncio.timeout(WAIT_S):
        while wanted not in received:
            received += (await anext(chunks)).decode()
    return received


async def test_a_followed_log_streams_what_the_container_writes_until_the_pod_goes(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = multinode()
    await backend.apply(endpoint)
    put_group(kube_api, endpoint, 0)
    kube_api.set_log(f"{LWS}-0-1", "engine", "one\ntwo\nthree\n")

    chunks = await backend.follow_logs(endpoint, 0, "rank-1", 2)
    assert await next_text(chunks, "three\n") == "two\nthree\n"
    kube_api.set_log(f"{LWS}-0-1", "engine", "one\ntwo\nthree\nfour, written later\n")
    assert await next_text(chunks, "four") == "four, written later\n"

    kube_api.remove("pods", f"{LWS}-0-1")
    async with asyncio.timeout(WAIT_S):
        rest = [chunk async for chunk in chunks if chunk]
    assert rest == []  # the stream ended with the pod


async def test_following_the_log_of_a_group_that_is_not_running_is_not_found(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = multinode()
    await backend.apply(endpoint)
    with pytest.raises(NotFound, match="no log for group 3, rank-0"):
        await backend.follow_logs(endpoint, 3, "rank-0", 5)
