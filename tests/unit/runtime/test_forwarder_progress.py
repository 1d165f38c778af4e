"""The leader's startup report in the forwarder's `/readyz` body while it is not ready, so a
Kubernetes backend (or anyone probing) sees how far the group's start got."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from llm_launch.domain.progress import PROGRESS_FILE_ENV, Phase, StartupProgress, WeightsProgress
from llm_launch.runtime.forwarder.cli import parse_args
from tests.unit.runtime.test_forwarder_app import Engine, forwarder

DOWNLOADING = StartupProgress(
    rank=0,
    phase=Phase.DOWNLOADING_WEIGHTS,
    updated_at=1_700_000_000.0,
    weights=WeightsProgress(done_bytes=290_000_000_000, total_bytes=700_000_000_000,
                            rate_bytes_per_s=1.1e9),
)  # fmt: skip


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")  # the engine is not started yet


async def test_a_forwarder_not_ready_serves_the_startup_report_in_its_readyz_body(
    tmp_path: Path,
) -> None:
    report = tmp_path / "progress.json"
    report.write_text(DOWNLOADING.to_json())
    engine = Engine(health_generate=refused)
    async with forwarder(
        engine, ready_check_path="/health_generate", progress_file=str(report)
    ) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503  # the status code is the readiness, as before
    body = response.json()
    assert body["startup"] == asdict(DOWNLOADING) | {"phase": "downloading-weights"}
    assert "unreachable" in body["reason"]


async def test_the_report_follows_the_file_as_the_startup_program_replaces_it(
    tmp_path: Path,
) -> None:
    report = tmp_path / "progress.json"
    engine = Engine(health_generate=refused)
    async with forwarder(
        engine, ready_check_path="/health_generate", progress_file=str(report), ready_cache_s=0
    ) as client:
        assert "startup" not in (await client.get("/readyz")).json()  # none written yet
        report.write_text(DOWNLOADING.to_json())
        assert (await client.get("/readyz")).json()["startup"]["phase"] == "downloading-weights"
        report.write_text(StartupProgress(0, Phase.STARTING_ENGINE, 1.0).to_json())
        assert (await client.get("/readyz")).json()["startup"]["phase"] == "starting-engine"
        report.write_text("{torn")
        assert "startup" not in (await client.get("/readyz")).json()


async def test_a_ready_forwarder_leaves_the_report_out(tmp_path: Path) -> None:
    report = tmp_path / "progress.json"
    report.write_text(StartupProgress(0, Phase.STARTING_ENGINE, 1.0).to_json())
    engine = Engine(health_generate=lambda r: httpx.Response(200))
    async with forwarder(
        engine, ready_check_path="/health_generate", progress_file=str(report)
    ) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200 and "startup" not in response.json()


def test_the_progress_file_comes_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["--engine-url", "http://127.0.0.1:5005", "--no-token"]
    monkeypatch.setenv(PROGRESS_FILE_ENV, "/run/llm-launch/progress.json")
    assert parse_args(argv)[0].progress_file == "/run/llm-launch/progress.json"
    given = parse_args([*argv, "--progress-file", "/elsewhere.json"])[0]
    assert given.progress_file == "/elsewhere.json"
    monkeypatch.delenv(PROGRESS_FILE_ENV)
    assert parse_args(argv)[0].progress_file is None
