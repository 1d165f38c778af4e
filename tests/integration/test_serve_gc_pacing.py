"""`serve`'s app keeps its garbage collections short (runtime/gc_pacing.py) only when asked:
the collector belongs to the whole process, and an app inside another program leaves it be."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from fastapi.testclient import TestClient

from llm_launch.api.app import create_app
from llm_launch.settings import Settings


def frozen_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gc.get_freeze_count() > 0:
            return True
        time.sleep(0.01)
    return False


def test_the_app_serve_runs_freezes_its_long_lived_objects(tmp_path: Path) -> None:
    gc.unfreeze()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with TestClient(create_app(settings, lambda _: None, pace_gc=True)) as client:
            assert client.get("/healthz").status_code == 200
            assert frozen_within(5)
    finally:
        gc.unfreeze()


def test_an_app_created_elsewhere_leaves_the_collector_alone(tmp_path: Path) -> None:
    gc.unfreeze()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with TestClient(create_app(settings, lambda _: None)) as client:
        assert client.get("/healthz").status_code == 200
        assert not frozen_within(0.3)
