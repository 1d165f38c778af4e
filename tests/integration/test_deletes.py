"""Issue 9 item 5: DELETE answers at once and the teardown finishes in the background.

The endpoint leaves GET, list and the inference routes as soon as DELETE answers; its
name stays taken (a 409 that says why) and its resources stay counted in its owner's quota
until the backend's teardown has ended and the row is gone. A teardown that fails is
retried with backoff, logged, and its reason shown to the owner under
`?include_deleting=true`. Over the real app and store with the in-memory backend, whose
teardown a test can hold (`teardown_gate`) or make fail (`teardown_failures`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

import llm_launch.cli
import llm_launch.cli.endpoints
from llm_launch.api.app import create_app
from llm_launch.client import LaunchClient
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.config.quotas import QuotaBook
from llm_launch.domain.errors import NotFound, QuotaExceeded
from llm_launch.domain.quotas import Quota
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.deletes import Backoff, Teardowns
from llm_launch.services.endpoints import EndpointService
from llm_launch.services.reconciler import Reconciler
from llm_launch.settings import Settings
from llm_launch.store.repository import EndpointRepository
from llm_launch.store.tables import EndpointRow, OperationRow
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend
from tests.support.data_plane import eventually

ALICE = "alice-key-00000000000000"
PATH = "/v1/llm/model-endpoints"
WAIT_S = 20.0  # generous: polls end as soon as their condition holds
QUICK = Backoff(base_s=0.01, cap_s=0.05)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(teardown_gate=threading.Event())


@pytest.fixture
def client(tmp_path: Path, backend: FakeBackend) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=parse_api_keys(f"alice:{ALICE}", source="test"),
        reconcile_interval_s=0.05,
    )
    with TestClient(create_app(settings, lambda _: backend), headers={"x-api-key": ALICE}) as test:
        test.post(PATH, json=endpoint_body(name="chat")).raise_for_status()
        yield test
        assert backend.teardown_gate is not None
        backend.teardown_gate.set()  # let a held teardown end before the app stops


def deleting(client: TestClient) -> list[dict[str, object]]:
    listed = client.get(PATH, params={"include_deleting": "true"}).json()["model_endpoints"]
    return [e for e in listed if e["status"] == "DELETE_IN_PROGRESS"]


def test_delete_answers_while_a_slow_teardown_goes_on_and_the_endpoint_leaves_every_view(
    client: TestClient, backend: FakeBackend
) -> None:
    assert backend.teardown_gate is not None
    # Should DELETE wait for the teardown, this opens it late, and the check below fails.
    opener = threading.Timer(WAIT_S / 2, backend.teardown_gate.set)
    opener.start()
    try:
        response = client.delete(f"{PATH}/chat")
        assert backend.torn_down == [], "DELETE waited for the teardown to end"
    finally:
        opener.cancel()
    assert response.status_code == 200
    assert response.json() == {"deleted": True}
    assert client.get(f"{PATH}/chat").status_code == 404
    assert client.get(PATH).json()["model_endpoints"] == []
    assert client.get(PATH, params={"name": "chat"}).json()["model_endpoints"] == []
    completion = client.post(
        "/v1/llm/completions-sync",
        params={"model_endpoint_name": "chat"},
        json={"prompt": "hi", "max_new_tokens": 2, "temperature": 0.0},
    )
    assert completion.status_code == 404
    assert client.put(f"{PATH}/chat", json={"min_workers": 2}).status_code == 404
    [shown] = deleting(client)  # its owner can still follow the teardown
    assert shown["name"] == "chat"

    backend.teardown_gate.set()
    eventually(lambda: deleting(client) == [], "the row goes once the teardown ends", WAIT_S)
    assert len(backend.torn_down) == 1


def test_the_name_is_refused_with_a_409_saying_so_until_its_teardown_has_finished(
    client: TestClient, backend: FakeBackend
) -> None:
    assert client.delete(f"{PATH}/chat").status_code == 200
    refused = client.post(PATH, json=endpoint_body(name="chat"))
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "endpoint 'chat' is still being deleted; try again when its teardown has finished"
    )
    assert backend.teardown_gate is not None
    backend.teardown_gate.set()
    eventually(lambda: deleting(client) == [], "the teardown ends", WAIT_S)
    assert client.post(PATH, json=endpoint_body(name="chat")).status_code == 200


def test_a_second_delete_of_an_endpoint_being_deleted_is_a_404(
    client: TestClient,
) -> None:
    assert client.delete(f"{PATH}/chat").status_code == 200
    second = client.delete(f"{PATH}/chat")
    assert second.status_code == 404
    assert second.json()["detail"] == "no endpoint named 'chat'"


def test_the_cli_delete_with_wait_returns_only_once_the_teardown_has_finished(
    client: TestClient, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InApp(LaunchClient):  # the CLI's client, talking to this test's app
        def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
            self._http = client

        def __exit__(self, *_: object) -> None:
            pass  # the app's client outlives each command

    monkeypatch.setattr(llm_launch.cli.endpoints, "LaunchClient", InApp)
    assert backend.teardown_gate is not None
    torn_down_when_done: list[str] = []
    results: list[Result] = []

    def delete_and_wait() -> None:
        results.append(
            CliRunner().invoke(llm_launch.cli.app, ["endpoints", "delete", "chat", "--wait"])
        )
        torn_down_when_done.extend(backend.torn_down)

    command = threading.Thread(target=delete_and_wait)
    command.start()
    eventually(lambda: backend.teardown_attempts == 1, "the teardown begins", WAIT_S)
    # Should --wait return before the teardown ends, it returns before this opens the gate.
    opener = threading.Timer(2.0, backend.teardown_gate.set)
    opener.start()
    command.join(WAIT_S)
    opener.cancel()
    [result] = results
    assert result.exit_code == 0, result.output
    assert torn_down_when_done, "--wait returned while the teardown was still going on"
    assert "waiting for its teardown to finish" in result.output
    assert "chat is gone; its name is free" in result.output


# -- the use case and the reconciler, over a real store ----------------------------------


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {WAIT_S}s: {what}")
        await asyncio.sleep(0.02)


async def gone(store: EndpointRepository, owner: str = "alice") -> bool:
    return await store.list_owned(owner, include_deleting=True) == []


async def test_two_concurrent_deletes_end_with_one_success_and_one_not_found(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(teardown_gate=threading.Event())
    teardowns = Teardowns(store, backend, backoff=QUICK)
    service = EndpointService(store, load_hardware_catalog(), backend, teardowns)
    endpoint, _ = await service.create("alice", endpoint_body())
    results = await asyncio.gather(
        service.delete("alice", endpoint.name),
        service.delete("alice", endpoint.name),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "NotFound"], results
    assert backend.teardown_gate is not None
    backend.teardown_gate.set()
    await until(lambda: gone(store), "the endpoint's row goes")
    assert backend.torn_down == [endpoint.id]
    await teardowns.close()


async def test_a_failing_teardown_is_retried_with_backoff_logged_and_shown_to_its_owner(
    store: EndpointRepository, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(teardown_failures=10**6)
    teardowns = Teardowns(store, backend, backoff=QUICK)
    service = EndpointService(store, load_hardware_catalog(), backend, teardowns)
    endpoint, _ = await service.create("alice", endpoint_body())
    caplog.set_level(logging.WARNING, logger="llm_launch.teardowns")
    await service.delete("alice", endpoint.name)

    async def reason_shown() -> bool:
        [row] = await store.list_owned("alice", include_deleting=True)
        return "teardown failed" in (row.status_reason or "") and backend.teardown_attempts > 3

    await until(reason_shown, "the failure is recorded and retried")
    [row] = await store.list_owned("alice", include_deleting=True)
    assert row.status is EndpointStatus.DELETE_IN_PROGRESS
    assert "kubernetes API unreachable" in (row.status_reason or "")
    assert "retrying in" in (row.status_reason or "")
    logged = [r.getMessage() for r in caplog.records if "kubernetes API unreachable" in r.message]
    assert len(logged) >= 3 and all(endpoint.id in m for m in logged), logged

    backend.teardown_failures = 0  # the API server is back
    await until(lambda: gone(store), "the row goes once a retry succeeds")
    assert backend.torn_down == [endpoint.id]
    await teardowns.close()


def test_teardown_retry_delays_grow_exponentially_with_jitter_up_to_a_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (20, 30)]:
        delays = {backoff.delay(attempt, rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1, "no jitter: retries of many endpoints would fall in step"


async def test_an_endpoint_being_deleted_still_counts_against_the_quota_and_the_refusal_says_so(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(teardown_gate=threading.Event())
    teardowns = Teardowns(store, backend, backoff=QUICK)
    quotas = QuotaBook(defaults=Quota(max_gpus=2))
    service = EndpointService(store, load_hardware_catalog(), backend, teardowns, quotas=quotas)
    first, _ = await service.create("alice", endpoint_body(max_workers=2))  # 2 GPUs
    await service.delete("alice", first.name)
    with pytest.raises(QuotaExceeded) as refused:
        await service.create("alice", endpoint_body(max_workers=1))
    message = refused.value.message
    assert "2 in use" in message
    assert "2 of them held by endpoints being deleted until their teardown ends" in message
    assert backend.teardown_gate is not None
    backend.teardown_gate.set()
    await until(lambda: gone(store), "the teardown ends")
    await service.create("alice", endpoint_body(max_workers=1))
    await teardowns.close()


async def test_the_reconciler_leaves_a_teardown_this_server_carries_out_alone(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(teardown_gate=threading.Event())
    teardowns = Teardowns(store, backend, backoff=QUICK)
    service = EndpointService(store, load_hardware_catalog(), backend, teardowns)
    endpoint, _ = await service.create("alice", endpoint_body())
    await service.delete("alice", endpoint.name)

    async def begun() -> bool:
        return backend.teardown_attempts == 1

    await until(begun, "the teardown begins")
    async with store._sessions.begin() as session:  # old enough to look interrupted
        await session.execute(
            update(EndpointRow).values(last_updated_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    await Reconciler(store, backend, teardowns=teardowns).reconcile_once()
    assert backend.teardown_attempts == 1  # not a second, concurrent teardown
    assert backend.teardown_gate is not None
    backend.teardown_gate.set()
    await until(lambda: gone(store), "the teardown ends")
    await teardowns.close()


async def test_a_delete_the_reconciler_finishes_after_a_restart_closes_its_operation(
    store: EndpointRepository,
) -> None:
    endpoint, _ = await EndpointService(store, load_hardware_catalog()).create(
        "alice", endpoint_body()
    )
    await store.mark_deleting(endpoint)  # then the server died
    backend = FakeBackend()
    await Reconciler(store, backend).reconcile_once()  # the next server's first pass
    assert await gone(store)
    async with store._sessions() as session:
        states = (await session.execute(select(OperationRow.kind, OperationRow.state))).all()
    assert sorted(states) == [("create", "pending"), ("delete", "done")]


async def test_a_long_teardown_keeps_its_row_fresh_so_no_other_replica_takes_it_over(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(teardown_gate=threading.Event())
    teardowns = Teardowns(store, backend, backoff=QUICK, heartbeat_s=0.05)
    service = EndpointService(store, load_hardware_catalog(), backend, teardowns)
    endpoint, _ = await service.create("alice", endpoint_body())
    await service.delete("alice", endpoint.name)
    [marked] = await store.list_owned("alice", include_deleting=True)

    async def touched() -> bool:
        [row] = await store.list_owned("alice", include_deleting=True)
        return row.last_updated_at > marked.last_updated_at

    await until(touched, "the teardown in progress refreshes its row")
    assert backend.teardown_gate is not None
    backend.teardown_gate.set()
    await until(lambda: gone(store), "the teardown ends")
    await teardowns.close()


async def test_a_delete_without_a_backend_removes_the_row_at_once(
    store: EndpointRepository,
) -> None:
    service = EndpointService(store, load_hardware_catalog())
    endpoint, _ = await service.create("alice", endpoint_body())
    await service.delete("alice", endpoint.name)
    assert await gone(store)
    with pytest.raises(NotFound):
        await service.delete("alice", endpoint.name)
