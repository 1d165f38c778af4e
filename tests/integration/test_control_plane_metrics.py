"""The control plane's /metrics (api/metrics.py): the reconciler's passes, whether this
process reconciles, and the routing table's endpoints by status and age, readable without
an API key and naming no owner, endpoint or key. Over a real database, the app's lifespan
and its reconciler (an in-memory backend); and a gateway process's page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llm_launch.api.app import create_app
from llm_launch.api.gateway_app import GatewaySettings, create_gateway_app
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.settings import Settings
from llm_launch.store.database import migrate
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend
from tests.support.data_plane import eventually

ALICE = "metrics-alice-key-0123456789abcdef"
KEYS = parse_api_keys(f"alice:{ALICE}", source="test")
PATH = "/v1/llm/model-endpoints"


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The page, read with Prometheus's own parser, without a key: (sample, labels) -> value."""
    response = client.get("/metrics", headers={"x-api-key": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    page: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return page[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=KEYS,
        reconcile_interval_s=0.05,
    )
    app = create_app(settings, lambda _: FakeBackend())
    with TestClient(app, headers={"x-api-key": ALICE}) as client:
        for name in ("secret-project-a", "secret-project-b"):
            client.post(PATH, json=endpoint_body(name=name)).raise_for_status()
        yield client


def test_serve_counts_passes_says_it_reconciles_and_counts_endpoints_by_status(
    serve: TestClient,
) -> None:
    def both_ready() -> bool:
        return value(scrape(serve), "llm_launch_endpoints", status="READY") == 2

    eventually(both_ready, "both endpoints READY on /metrics")
    first = scrape(serve)
    time.sleep(0.3)  # several passes, 0.05 s apart
    later = scrape(serve)

    passes = "llm_launch_reconcile_pass_seconds_count"
    assert value(later, passes) > value(first, passes) >= 1
    assert value(later, "llm_launch_reconcile_pass_seconds_sum") > 0
    assert value(later, "llm_launch_reconciler_leading") == 1
    last_success = value(later, "llm_launch_reconcile_last_success_timestamp_seconds")
    assert time.time() - 5 < last_success <= time.time()
    assert value(later, "llm_launch_reconcile_pass_failures_total") == 0
    assert value(later, "llm_launch_endpoints", status="UPDATE_FAILED") == 0
    assert 0 <= value(later, "llm_launch_routing_table_age_seconds") < 5


def test_the_page_names_no_owner_endpoint_or_key(serve: TestClient) -> None:
    text = serve.get("/metrics", headers={"x-api-key": ""}).text
    for secret in ("alice", "secret-project", ALICE):
        assert secret not in text


def test_a_failing_pass_is_counted_and_the_last_success_stops_moving(
    serve: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    eventually(lambda: scrape(serve)[("llm_launch_reconcile_pass_seconds_count", ())] > 0, "a pass")
    repository = serve.app.state.endpoints.repository  # type: ignore[attr-defined]

    async def unreachable(*_: object) -> None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(repository, "list_all", unreachable)
    failures = "llm_launch_reconcile_pass_failures_total"
    eventually(lambda: value(scrape(serve), failures) >= 2, "two failed passes counted")
    stuck = value(scrape(serve), "llm_launch_reconcile_last_success_timestamp_seconds")
    time.sleep(0.2)
    assert value(scrape(serve), "llm_launch_reconcile_last_success_timestamp_seconds") == stuck


def test_the_reconciler_says_it_stopped_when_the_server_stops(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", api_keys=KEYS)
    with TestClient(create_app(settings, lambda _: FakeBackend())) as client:
        assert value(scrape(client), "llm_launch_reconciler_leading") == 1
        metrics = client.app.state.metrics  # type: ignore[attr-defined]
    page = metrics.exposition().decode()
    assert "llm_launch_reconciler_leading 0.0" in page


def test_without_a_backend_there_is_no_reconciler_to_report(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", api_keys=KEYS)
    with TestClient(create_app(settings, lambda _: None)) as client:
        page = scrape(client)
    assert not any(name.startswith("llm_launch_reconcile") for name, _ in page)
    assert value(page, "llm_launch_endpoints", status="READY") == 0


def test_a_gateway_process_reports_its_routing_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    settings = GatewaySettings(database_url=url, api_keys=KEYS, refresh_s=0.05)
    with TestClient(create_gateway_app(settings)) as client:
        page = scrape(client)
    assert value(page, "llm_launch_endpoints", status="READY") == 0
    assert value(page, "llm_launch_routing_table_age_seconds") >= 0
    assert not any(name.startswith("llm_launch_reconcile") for name, _ in page)
