"""The lean inference path's routing table, over the real app and store: writes made by
another process (another API replica) reach the routes within the table's refresh, a
failure the reconciler records here reaches them at once, and owners stay apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from llm_launch.api.app import create_app
from llm_launch.backends.base import Observation
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services import routing_table
from llm_launch.settings import Settings
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend

ALICE, BOB = "alice-key-00000000000000", "bob-key-0000000000000000"
LAUNCH = {"prompt": "hi", "max_new_tokens": 2, "temperature": 0.0}
PATIENCE_S = 15.0  # far above the 1 s refresh: a bound on a wait, not a timing assertion


def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=parse_api_keys(f"alice:{ALICE}\nbob:{BOB}", source="test"),
        inference_timeout_s=0.5,
    )


@pytest.fixture
def unreconciled(tmp_path: Path) -> Iterator[TestClient]:
    """A replica that does not reconcile (no backend): only the refresh brings it news."""
    with TestClient(
        create_app(settings(tmp_path), lambda _: None), headers={"x-api-key": ALICE}
    ) as test:
        yield test


def sync(client: TestClient, key: str = ALICE) -> httpx.Response:
    return client.post(
        "/v1/llm/completions-sync",
        params={"model_endpoint_name": "chat"},
        json=LAUNCH,
        headers={"x-api-key": key},
    )


def eventually(
    answer: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]
) -> httpx.Response:
    deadline = time.monotonic() + PATIENCE_S
    while True:
        response = answer()
        if done(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def in_another_process(tmp_path: Path, write: Callable[[EndpointRepository], object]) -> None:
    """Write to the database as another API replica would: not through this app."""

    async def run() -> None:
        engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
        try:
            await write(EndpointRepository(engine))  # type: ignore[misc]
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _chat(repository: EndpointRepository, owner: str = "alice"):  # type: ignore[no-untyped-def]
    return await repository.get(owner, "chat")


def test_an_endpoint_deleted_by_another_replica_is_404_once_the_table_refreshed(
    unreconciled: TestClient, tmp_path: Path
) -> None:
    unreconciled.post("/v1/llm/model-endpoints", json=endpoint_body(name="chat")).raise_for_status()
    assert sync(unreconciled).status_code == 503  # known here: no ready group yet

    async def delete(repository: EndpointRepository) -> None:
        await repository.mark_deleting(await _chat(repository))

    in_another_process(tmp_path, delete)
    response = eventually(lambda: sync(unreconciled), lambda r: r.status_code != 503)
    assert response.status_code == 404
    assert response.json()["detail"] == "no endpoint named 'chat'"


def test_a_failure_recorded_by_another_replica_is_named_by_the_503_once_refreshed(
    unreconciled: TestClient, tmp_path: Path
) -> None:
    unreconciled.post("/v1/llm/model-endpoints", json=endpoint_body(name="chat")).raise_for_status()

    async def fail(repository: EndpointRepository) -> None:
        chat = await _chat(repository)
        await repository.set_status(chat.id, EndpointStatus.UPDATE_FAILED, "engine crashed")

    in_another_process(tmp_path, fail)
    response = eventually(
        lambda: sync(unreconciled), lambda r: "UPDATE_FAILED" in r.json()["detail"]
    )
    assert response.status_code == 503
    assert "UPDATE_FAILED: engine crashed" in response.json()["detail"]


def test_an_endpoint_another_replica_created_is_routed_for_its_owner_only(
    unreconciled: TestClient, tmp_path: Path
) -> None:
    unreconciled.post(
        "/v1/llm/model-endpoints", json=endpoint_body(name="other")
    ).raise_for_status()

    async def create(repository: EndpointRepository) -> None:
        spec = build_spec(endpoint_body(name="chat"), settings(tmp_path).catalog)
        await repository.create("bob", spec)

    in_another_process(tmp_path, create)
    bobs = eventually(lambda: sync(unreconciled, BOB), lambda r: r.status_code != 404)
    assert bobs.status_code == 503  # bob's, known now (no ready group)
    assert sync(unreconciled, ALICE).status_code == 404  # never alice's


def test_a_failure_the_reconciler_records_here_reaches_the_route_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing_table, "REFRESH_S", 3600.0)  # only the reconciler's hook
    backend = FakeBackend()
    with TestClient(
        create_app(settings(tmp_path), lambda _: backend), headers={"x-api-key": ALICE}
    ) as client:
        client.post("/v1/llm/model-endpoints", json=endpoint_body(name="chat")).raise_for_status()
        backend.observation = Observation(EndpointStatus.UPDATE_FAILED, "engine crashed", 0, 1)
        table = client.app.state.routing_table  # type: ignore[attr-defined]
        refreshes = table.refreshes  # the one at start
        response = eventually(lambda: sync(client), lambda r: "UPDATE_FAILED" in r.json()["detail"])
        assert response.status_code == 503
        assert "UPDATE_FAILED: engine crashed" in response.json()["detail"]
        assert table.refreshes == refreshes  # the reconciler's hook did it, not a refresh
