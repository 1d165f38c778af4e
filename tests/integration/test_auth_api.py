"""API keys (basic, bearer, x-api-key), ownership, and the single-owner local mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.builders import endpoint_body
from tests.conftest import ALICE_KEY
from tests.support.server import RunningServer

ENDPOINTS = "/v1/llm/model-endpoints"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"auth": (ALICE_KEY, "")}, id="basic auth with the key as username"),
        pytest.param({"headers": {"Authorization": f"Bearer {ALICE_KEY}"}}, id="bearer"),
        pytest.param({"headers": {"x-api-key": ALICE_KEY}}, id="x-api-key"),
    ],
)
def test_each_way_of_sending_a_key_authenticates(
    server: RunningServer, auth: dict[str, object]
) -> None:
    response = httpx.get(f"{server.url}{ENDPOINTS}", **auth)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no key"),
        pytest.param({"x-api-key": "not-a-real-key-000000000"}, id="unknown key"),
        pytest.param({"Authorization": "Basic !!notbase64"}, id="malformed basic"),
    ],
)
def test_a_missing_or_wrong_key_is_401(server: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.post(f"{server.url}{ENDPOINTS}", json=endpoint_body(), headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_keys_never_appear_in_the_server_log(server: RunningServer, alice: httpx.Client) -> None:
    alice.get(ENDPOINTS)
    httpx.get(f"{server.url}{ENDPOINTS}", headers={"x-api-key": "wrong-key-but-secret-123"})
    assert ALICE_KEY not in server.log()
    assert "wrong-key-but-secret-123" not in server.log()


class TestOwnership:
    def test_another_owners_endpoint_is_invisible(
        self, alice: httpx.Client, bob: httpx.Client
    ) -> None:
        body = endpoint_body()
        assert alice.post(ENDPOINTS, json=body).status_code == 200
        path = f"{ENDPOINTS}/{body['name']}"
        assert bob.get(path).status_code == 404
        assert body["name"] not in {e["name"] for e in bob.get(ENDPOINTS).json()["model_endpoints"]}
        assert bob.get(ENDPOINTS, params={"name": body["name"]}).json()["model_endpoints"] == []

    def test_another_owner_cannot_change_or_delete_it(
        self, alice: httpx.Client, bob: httpx.Client
    ) -> None:
        body = endpoint_body()
        alice.post(ENDPOINTS, json=body)
        path = f"{ENDPOINTS}/{body['name']}"
        assert bob.put(path, json={"min_workers": 0}).status_code == 404
        assert bob.delete(path).status_code == 404
        endpoint = alice.get(path).json()
        assert endpoint["spec"]["deployment_state"]["min_workers"] == 1

    def test_two_owners_may_use_the_same_name(self, alice: httpx.Client, bob: httpx.Client) -> None:
        body = endpoint_body()
        assert alice.post(ENDPOINTS, json=body).status_code == 200
        assert bob.post(ENDPOINTS, json=body).status_code == 200
        assert bob.get(f"{ENDPOINTS}/{body['name']}").json()["spec"]["created_by"] == "bob"
        assert alice.get(f"{ENDPOINTS}/{body['name']}").json()["spec"]["created_by"] == "alice"


class TestLocalMode:
    def test_without_keys_one_local_owner_needs_no_credentials(self, tmp_path: Path) -> None:
        server = RunningServer(
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            tmp_path,
            env={"LLM_LAUNCH_API_KEYS": "", "LLM_LAUNCH_BACKEND": "none"},
        )
        server.start()
        try:
            body = endpoint_body()
            assert httpx.post(f"{server.url}{ENDPOINTS}", json=body).status_code == 200
            endpoint = httpx.get(f"{server.url}{ENDPOINTS}/{body['name']}").json()
            assert endpoint["spec"]["created_by"] == "local"
        finally:
            server.stop()

    def test_without_keys_the_server_refuses_a_public_address(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "llm_launch",
                "serve",
                "--host",
                "0.0.0.0",
                "--database-url",
                f"sqlite:///{tmp_path / 'db.sqlite'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "LLM_LAUNCH_API_KEYS": ""},
        )
        assert result.returncode != 0
        assert "refusing to bind 0.0.0.0" in result.stderr
        assert not (tmp_path / "db.sqlite").exists()

    def test_a_malformed_keys_setting_stops_the_server_with_a_clear_error(
        self, tmp_path: Path
    ) -> None:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "llm_launch",
                "serve",
                "--database-url",
                f"sqlite:///{tmp_path / 'db.sqlite'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "LLM_LAUNCH_API_KEYS": "alice:short"},
        )
        assert result.returncode != 0
        assert "shorter than 16" in result.stderr
        assert "short" not in result.stderr.replace("shorter", "")
