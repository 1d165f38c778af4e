"""A gateway process's probes (api/gateway_app.py), as the Kubernetes manifest uses them:
the paths its Deployment probes answer without a key; /readyz is 200 once the routing
table is loaded and the database answers, 503 with a reason while the table cannot
refresh though the database still answers (its tables locked), and 200 again once it
refreshes; /healthz stays 200 throughout. Over a real database and the app's lifespan;
and a real `llm-launch gateway --host ::`, as the manifest runs it, answers its probes
over IPv4 and IPv6."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from llm_launch.api.gateway_app import GatewaySettings, create_gateway_app
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.store.database import migrate
from tests.integration.test_gateway_processes import RunningGateway
from tests.support.databases import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "gateway-deployment.yaml"
KEYS = parse_api_keys("alice:probe-alice-key-0123456789abcdef", source="test")
REFRESH_S = 0.05


def gateway_client(database_url: str) -> TestClient:
    migrate(database_url)
    settings = GatewaySettings(database_url=database_url, api_keys=KEYS, refresh_s=REFRESH_S)
    return TestClient(create_gateway_app(settings))


def probes() -> dict[str, dict[str, Any]]:
    deployment = yaml.safe_load(GATEWAY_DEPLOYMENT.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {kind: container[kind] for kind in ("readinessProbe", "livenessProbe")}


def wait_for_readyz(client: TestClient, status: int, within_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        response = client.get("/readyz")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            body: dict[str, Any] = response.json()
            return body
        time.sleep(REFRESH_S)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
def test_the_paths_the_deployment_probes_answer_200_without_a_key(
    kind: str, tmp_path: Path
) -> None:
    probe = probes()[kind]
    with gateway_client(f"sqlite:///{tmp_path / 'db.sqlite'}") as client:
        assert client.get(probe["httpGet"]["path"]).status_code == 200


def test_readyz_is_200_once_the_table_is_loaded_and_the_database_answers(
    tmp_path: Path,
) -> None:
    with gateway_client(f"sqlite:///{tmp_path / 'db.sqlite'}") as client:
        assert client.app.state.routing_table.refreshes >= 1  # type: ignore[attr-defined]
        assert client.get("/readyz").json() == {"status": "ok"}


def test_readyz_is_503_while_the_table_cannot_refresh_though_the_database_answers(
    postgres_url: str,
) -> None:
    with gateway_client(postgres_url) as client:
        assert client.get("/readyz").status_code == 200
        # Every table locked (as a long migration would): SELECT 1 still answers, but no
        # refresh can read anything, whatever it reads.
        with psycopg.connect(postgres_url) as locker:
            tables = [
                name
                for (name,) in locker.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            locker.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            body = wait_for_readyz(client, 503)
            assert "routing table has not refreshed" in body["reason"]
            assert client.get("/healthz").status_code == 200  # alive: a restart would not help
            locker.rollback()  # the locks go; the waiting refresh completes
        assert wait_for_readyz(client, 200) == {"status": "ok"}


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="this machine has no IPv6 loopback")
def test_a_gateway_on_host_colons_answers_its_probes_over_ipv4_and_ipv6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(database_url)
    monkeypatch.setenv("LLM_LAUNCH_GATEWAY_HOST", "::")
    gateway = RunningGateway(database_url, tmp_path, processes=2)
    try:
        gateway.start()  # polls http://127.0.0.1:PORT/healthz: IPv4 reaches it
        for host in ("127.0.0.1", "[::1]"):
            for path in ("/healthz", "/readyz"):
                assert httpx.get(f"http://{host}:{gateway.port}{path}").status_code == 200
    finally:
        gateway.stop()
