"""A gateway never migrates the database; on a schema older than its code it waits, not
ready, for `serve` to migrate (api/gateway_app.py, store/database.py).

Why it matters: in an upgrade whose gateway pods roll out before the API servers, a
gateway that migrated would put the old API servers on a schema newer than their code.
Over a real database of each kind and the app's lifespan; and the real `llm-launch
gateway` command on a database one revision behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from llm_launch.api import gateway_app
from llm_launch.api.gateway_app import GatewaySettings, create_gateway_app
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.store.database import head_revision, migrate, schema_behind
from tests.integration.test_gateway_processes import ALICE, KEYS, RunningGateway
from tests.integration.test_routing_revision_migration import migrate as migrate_to

CHAT = {"model": "not-there", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def quick_schema_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_app, "SCHEMA_POLL_S", 0.05)


@pytest.fixture
def gateway(database_url: str) -> Iterator[TestClient]:
    keys = parse_api_keys(KEYS, source="test", separator=",")
    settings = GatewaySettings(database_url=database_url, api_keys=keys, refresh_s=0.05)
    with TestClient(create_gateway_app(settings)) as client:
        yield client


def revision(url: str) -> str | None:
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def readyz_once(client: TestClient, status: int, within_s: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + within_s
    while (response := client.get("/readyz")).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)
    body: dict[str, str] = response.json()
    return body


def chat(client: TestClient) -> tuple[int, str]:
    response = client.post("/v2/chat/completions", json=CHAT, headers={"x-api-key": ALICE})
    return response.status_code, response.text


def test_on_an_empty_database_it_waits_changing_nothing_then_loads_once_serve_migrated(
    database_url: str, gateway: TestClient
) -> None:
    reason = gateway.get("/readyz").json()["reason"]
    assert gateway.get("/readyz").status_code == 503
    assert "waiting for the control-plane API (llm-launch serve) to migrate" in reason
    assert gateway.get("/healthz").status_code == 200  # alive: a restart would not help
    status, text = chat(gateway)
    assert status == 503, text  # not a 404: the gateway does not know yet, it is not gone
    assert "routing table has not been loaded" in text
    time.sleep(0.3)  # several polls
    assert revision(database_url) is None  # nothing migrated, no SQLite file made

    migrate(database_url)  # what serve does at start

    assert readyz_once(gateway, 200) == {"status": "ok"}
    status, text = chat(gateway)
    assert status == 404 and "no endpoint named 'not-there'" in text


def test_on_a_schema_one_revision_behind_it_waits_and_leaves_the_revision_alone(
    database_url: str,
) -> None:
    migrate_to(database_url, "0003")  # the release before, as the old API servers left it
    keys = parse_api_keys(KEYS, source="test", separator=",")
    settings = GatewaySettings(database_url=database_url, api_keys=keys, refresh_s=0.05)
    with TestClient(create_gateway_app(settings)) as client:
        reason = readyz_once(client, 503)["reason"]
        assert f"schema is at revision 0003, this code needs {head_revision()}" in reason
        time.sleep(0.3)
        assert revision(database_url) == "0003"
        migrate(database_url)
        assert readyz_once(client, 200) == {"status": "ok"}


def test_on_a_schema_newer_than_its_code_it_routes(database_url: str) -> None:
    migrate(database_url)
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:  # the API servers were upgraded first
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_next'"))
    engine.dispose()
    assert schema_behind(database_url) is None
    keys = parse_api_keys(KEYS, source="test", separator=",")
    settings = GatewaySettings(database_url=database_url, api_keys=keys, refresh_s=0.05)
    with TestClient(create_gateway_app(settings)) as client:
        assert client.get("/readyz").json() == {"status": "ok"}
        assert chat(client)[0] == 404
    assert revision(database_url) == "9999_next"


def test_the_gateway_command_never_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate_to(url, "0003")
    gateway = RunningGateway(url, tmp_path, processes=2).start()  # /healthz answers
    try:
        time.sleep(0.5)
        ready = httpx.get(f"{gateway.url}/readyz")
        assert ready.status_code == 503 and "revision 0003" in ready.json()["reason"]
        assert revision(url) == "0003"
        assert "waiting for the control-plane API" in gateway.log()
    finally:
        assert gateway.stop() == 0
