"""The control plane's own probes: /healthz (alive) and /readyz (the database answers)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from llm_launch.api.app import create_app
from llm_launch.settings import Settings


def test_readyz_fails_with_a_reason_when_the_database_does_not_answer(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with TestClient(create_app(settings, lambda _: None)) as client:
        assert client.get("/readyz").status_code == 200
        repository = client.app.state.endpoints.repository  # type: ignore[attr-defined]
        gone = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
        repository._sessions = async_sessionmaker(gone)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "database unavailable" in response.json()["reason"]
        assert client.get("/healthz").status_code == 200  # alive all the same
