"""Informers against the local API server: list, watch, resume, re-list on 410, back off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm_launch.backends.kubernetes.client import POD, KubeClient
from llm_launch.backends.kubernetes.watch import Informer, WatchTiming
from tests.fakes.kube_api import FakeKubeApi, lws_pod, running
from tests.integration.kubernetes.conftest import eventually

SELECTOR = "app.kubernetes.io/managed-by=llm-launch"


@pytest.fixture
async def events() -> list[tuple[str, str]]:
    return []


@pytest.fixture
async def informer(client: KubeClient, events: list[tuple[str, str]]) -> AsyncIterator[Informer]:
    def listen(event_type: str, obj: dict[str, Any]) -> None:
        events.append((event_type, obj["metadata"]["name"]))

    timing = WatchTiming(stream_timeout_s=1, backoff_initial_s=0.05, backoff_max_s=0.2)
    watching = Informer(client, POD, "default", SELECTOR, [listen], timing)
    watching.start()
    try:
        yield watching
    finally:
        await watching.stop()


def lists(kube_api: FakeKubeApi) -> int:
    return sum(1 for r in kube_api.requests if r.plural == "pods" and "watch" not in r.query)


async def cached(informer: Informer, name: str) -> dict[str, Any] | None:
    return informer.cache.get(name)


async def test_the_first_list_fills_the_cache_indexed_by_endpoint(
    kube_api: FakeKubeApi, informer: Informer
) -> None:
    kube_api.put("pods", lws_pod("llm-a", 0, 0, "ep-a"))
    kube_api.put("pods", lws_pod("llm-b", 0, 0, "ep-b"))
    unmanaged = lws_pod("other", 0, 0, "ep-a")
    del unmanaged["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    kube_api.put("pods", unmanaged)
    assert await informer.wait_synced(5)
    await eventually(lambda: cached(informer, "llm-b-0"), lambda found: found is not None)
    assert [p["metadata"]["name"] for p in informer.cache.for_endpoint("ep-a")] == ["llm-a-0"]
    assert informer.cache.get("other-0") is None


async def test_watch_events_update_the_cache_and_reach_listeners(
    kube_api: FakeKubeApi, informer: Informer, events: list[tuple[str, str]]
) -> None:
    assert await informer.wait_synced(5)
    kube_api.put("pods", lws_pod("llm-a", 0, 0, "ep-a"))
    kube_api.put("pods", lws_pod("llm-a", 0, 0, "ep-a", statuses=[running(ready=True)]))
    kube_api.remove("pods", "llm-a-0")
    await eventually(lambda: _copy(events), lambda seen: len(seen) >= 3)
    assert events == [("ADDED", "llm-a-0"), ("MODIFIED", "llm-a-0"), ("DELETED", "llm-a-0")]
    assert informer.cache.for_endpoint("ep-a") == []


async def test_a_stream_that_ends_is_resumed_from_its_version_without_listing_again(
    kube_api: FakeKubeApi, informer: Informer
) -> None:
    assert await informer.wait_synced(5)
    kube_api.put("pods", lws_pod("llm-a", 0, 0, "ep-a"))
    await eventually(lambda: cached(informer, "llm-a-0"), lambda found: found is not None)
    watches_before = sum(1 for r in kube_api.requests if r.query.get("watch") == "true")
    kube_api.end_watches()
    kube_api.put("pods", lws_pod("llm-b", 0, 0, "ep-b"))
    await eventually(lambda: cached(informer, "llm-b-0"), lambda found: found is not None)
    resumed = [r for r in kube_api.requests if r.query.get("watch") == "true"][watches_before:]
    assert resumed and resumed[0].query["resourceVersion"] != ""
    assert lists(kube_api) == 1


async def test_a_410_gone_makes_it_list_again_and_catch_up_on_what_it_missed(
    kube_api: FakeKubeApi, informer: Informer, events: list[tuple[str, str]]
) -> None:
    kube_api.put("pods", lws_pod("llm-a", 0, 0, "ep-a"))
    assert await informer.wait_synced(5)
    await eventually(lambda: cached(informer, "llm-a-0"), lambda found: found is not None)
    kube_api.remove("pods", "llm-a-0", silent=True)  # deleted while history was lost
    kube_api.expire_watches()
    await eventually(lambda: cached(informer, "llm-a-0"), lambda found: found is None)
    assert lists(kube_api) == 2
    assert events[-1] == ("DELETED", "llm-a-0")


async def test_errors_are_retried_with_backoff_and_remembered_until_it_recovers(
    kube_api: FakeKubeApi, client: KubeClient
) -> None:
    kube_api.fail_next("GET", "pods", 500, "InternalError", "etcd is down", times=1000)
    timing = WatchTiming(stream_timeout_s=1, backoff_initial_s=0.05, backoff_max_s=0.1)
    watching = Informer(client, POD, "default", SELECTOR, timing=timing)
    watching.start()
    try:
        await eventually(lambda: _error(watching), lambda error: error is not None)
        assert "etcd is down" in (watching.last_error or "")
        started = asyncio.get_running_loop().time()
        assert not await watching.wait_synced(5)  # failing: it answers at once
        assert asyncio.get_running_loop().time() - started < 1
        kube_api.clear_failures()
        await eventually(lambda: _error(watching), lambda error: error is None)
        assert watching.synced.is_set()
        assert 2 <= lists(kube_api) < 100  # backed off, not spinning
    finally:
        await watching.stop()


async def _error(informer: Informer) -> str | None:
    return informer.last_error


async def _copy(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(events)
