"""Per-owner quotas (issue 8 item 2): limits given with the keys, defaults from `serve`, and a
check that concurrent requests cannot overshoot, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import endpoint_body
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer

ENDPOINTS = "/v1/llm/model-endpoints"


def key(owner: str, n: int = 0) -> str:
    return f"{owner}-quota-key-{n}-0123456789abcdef"


# One owner per behaviour, so the tests share a server without sharing usage.
QUOTA_KEYS = ",".join(
    [
        f"gina:{key('gina')} max_gpus=4",
        f"gina:{key('gina', 1)} max_gpus=4",  # a second key, the same quota: accepted
        f"greg:{key('greg')} max_groups=3",
        f"rita:{key('rita')} max_endpoints=3",
        f"uma:{key('uma')} max_gpus=4",
        f"olga:{key('olga')} max_gpus=2",
        f"hugo:{key('hugo')} max_gpus=unlimited",
    ]
)


def _serving(url: str, data_dir: Path, env: dict[str, str]) -> RunningServer:
    return RunningServer(url, data_dir, env={"LLM_LAUNCH_BACKEND": "none", **env}).start()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def quota_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp(f"quotas-{request.param}")
    env = {"LLM_LAUNCH_API_KEYS": QUOTA_KEYS}
    if request.param == "sqlite":
        running = _serving(f"sqlite:///{data_dir / 'launch.db'}", data_dir, env)
        yield running
        running.stop()
    else:
        with fresh_postgres_database() as url:
            running = _serving(url, data_dir, env)
            yield running
            running.stop()


def client(server: RunningServer, owner: str, n: int = 0) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key(owner, n)}, timeout=60)


def names(owner_client: httpx.Client) -> set[str]:
    return {e["name"] for e in owner_client.get(ENDPOINTS).json()["model_endpoints"]}


def refused(response: httpx.Response, field: str) -> str:
    """The message of a quota refusal, after checking its shape: 403, detail and errors."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["errors"][0]["message"] in body["detail"]
    message: str = body["errors"][0]["message"]
    return message


def test_a_create_over_the_gpu_quota_is_refused_saying_usage_and_limit_and_stores_nothing(
    quota_server: RunningServer,
) -> None:
    with client(quota_server, "gina") as gina:
        first = endpoint_body(gpus=1, num_shards=1, max_workers=2)  # 2 GPUs at most
        assert gina.post(ENDPOINTS, json=first).status_code == 200
        second = endpoint_body(gpus=2, num_shards=2, max_workers=2)  # 4 more
        message = refused(gina.post(ENDPOINTS, json=second), "gpus")
        assert "owner gina would use 6 GPUs" in message
        assert "(2 in use + 4 requested); the limit is 4" in message
        assert names(gina) == {first["name"]}


def test_an_owners_keys_share_one_quota(quota_server: RunningServer) -> None:
    with client(quota_server, "gina", 1) as other_key:
        body = endpoint_body(gpus=1, num_shards=1, max_workers=4)
        message = refused(other_key.post(ENDPOINTS, json=body), "gpus")
        assert "owner gina" in message and "the limit is 4" in message


def test_replica_groups_count_each_endpoints_max_workers(quota_server: RunningServer) -> None:
    with client(quota_server, "greg") as greg:
        assert greg.post(ENDPOINTS, json=endpoint_body(min_workers=0, max_workers=2)).is_success
        body = endpoint_body(min_workers=1, max_workers=2)
        message = refused(greg.post(ENDPOINTS, json=body), "max_workers")
        assert "owner greg would use 4 replica groups" in message
        assert "(2 in use + 2 requested); the limit is 3" in message
        assert greg.post(ENDPOINTS, json=endpoint_body(max_workers=1)).status_code == 200


async def _create_concurrently(server: RunningServer, count: int) -> list[int]:
    headers = {"x-api-key": key("rita")}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as rita:
        bodies = [endpoint_body(gpus=0, gpu_type=None, num_shards=1) for _ in range(count)]
        responses = await asyncio.gather(*(rita.post(ENDPOINTS, json=b) for b in bodies))
    return [r.status_code for r in responses]


def test_concurrent_creates_never_overshoot_the_endpoint_quota(
    quota_server: RunningServer,
) -> None:
    codes = asyncio.run(_create_concurrently(quota_server, 10))
    assert sorted(codes) == [200] * 3 + [403] * 7
    with client(quota_server, "rita") as rita:
        assert len(names(rita)) == 3


def test_an_update_counts_the_endpoints_own_usage_out(quota_server: RunningServer) -> None:
    with client(quota_server, "uma") as uma:
        body = endpoint_body(gpus=2, num_shards=2, min_workers=1, max_workers=2)  # 4 of 4
        assert uma.post(ENDPOINTS, json=body).status_code == 200
        path = f"{ENDPOINTS}/{body['name']}"
        # Unchanged usage, at the limit: its own 4 GPUs are not counted twice.
        assert uma.put(path, json={"labels": {"team": "research"}}).status_code == 200
        message = refused(uma.put(path, json={"max_workers": 3}), "gpus")
        assert "owner uma would use 6 GPUs (0 in use by its other endpoints + 6 requested)" in (
            message
        )
        assert uma.get(path).json()["spec"]["deployment_state"]["max_workers"] == 2
        assert uma.put(path, json={"min_workers": 0, "max_workers": 1}).status_code == 200


def test_another_owners_usage_neither_counts_nor_shows(quota_server: RunningServer) -> None:
    with client(quota_server, "hugo") as hugo, client(quota_server, "olga") as olga:
        big = endpoint_body(gpus=8, num_shards=8, max_workers=4)  # 32 GPUs, hugo's
        assert hugo.post(ENDPOINTS, json=big).status_code == 200
        assert olga.post(ENDPOINTS, json=endpoint_body(max_workers=2)).status_code == 200
        message = refused(olga.post(ENDPOINTS, json=endpoint_body(max_workers=1)), "gpus")
        assert "(2 in use + 1 requested)" in message
        assert "hugo" not in message and "32" not in message


def test_single_owner_local_mode_has_the_default_quotas(tmp_path: Path) -> None:
    env = {"LLM_LAUNCH_QUOTA_MAX_ENDPOINTS": "1"}
    running = _serving(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as local:
            assert local.post(ENDPOINTS, json=endpoint_body()).status_code == 200
            message = refused(local.post(ENDPOINTS, json=endpoint_body()), "name")
            assert "owner local would use 2 endpoints (1 in use + 1 requested)" in message
            assert "the limit is 1" in message
    finally:
        running.stop()


def serve_refusal(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    """The error `serve` stops with, for a configuration it must refuse before binding."""
    result = subprocess.run(
        [sys.executable, "-m", "llm_launch", "serve", "--data-dir", str(tmp_path), *args],
        env={**os.environ, "LLM_LAUNCH_BACKEND": "none", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        pytest.param(
            {"LLM_LAUNCH_API_KEYS": f"ann:{key('a')} max_gpus=8,ann:{key('a', 1)} max_gpus=16"},
            (),
            "owner 'ann' has max_gpus=16, but LLM_LAUNCH_API_KEYS entry 1 gives max_gpus=8",
            id="one owner, two keys, two quotas",
        ),
        pytest.param(
            {"LLM_LAUNCH_API_KEYS": f"ann:{key('a')} max_gpu=8"},
            (),
            "word 1 after the key is not a quota option",
            id="misspelt option",
        ),
        pytest.param(
            {"LLM_LAUNCH_API_KEYS": f"ann:{key('a')} max_gpus=-1"},
            (),
            "max_gpus: expected a whole number >= 0 or 'unlimited'",
            id="negative limit",
        ),
        pytest.param(
            {}, ("--quota-max-groups", "lots"), "--quota-max-groups: expected", id="bad default"
        ),
    ],
)
def test_serve_refuses_malformed_or_conflicting_quotas_at_start(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], words: str
) -> None:
    message = serve_refusal(tmp_path, env, *args)
    assert words in message
    assert key("a") not in message and key("a", 1) not in message


def test_serve_keeps_a_key_with_a_space_out_of_its_error(tmp_path: Path) -> None:
    secret_tail = "tail-of-the-key-0123456789"
    message = serve_refusal(tmp_path, {"LLM_LAUNCH_API_KEYS": f"ann:{key('a')} {secret_tail}"})
    assert "word 1 after the key" in message and secret_tail not in message
