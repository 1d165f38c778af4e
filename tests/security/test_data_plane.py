"""The data plane answers only the control plane: each endpoint's forwarder requires the
endpoint's own secret token, which the control plane sends on every routed request and
which no user, log, response or command line ever shows.

Three levels: the forwarder app (what it passes on to the engine), a forwarder process
(how it gets its token, and what it refuses), and a real local server with simulated
groups (direct calls refused, routed calls answered, the token nowhere to be read).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from llm_launch.runtime.forwarder.app import ForwarderConfig, create_app
from llm_launch.store import database
from tests.builders import endpoint_body
from tests.support.data_plane import TOKEN_ENV, Process, start_forwarder
from tests.support.local_groups import (
    cmdline,
    forwarder_url,
    group_records,
    kill_marked,
    processes_with_env,
    wait_for,
)
from tests.support.processes import start_fake_engine
from tests.support.server import free_port, simulated_local_server

TOKEN = "data-plane-test-token-0123456789"
LAUNCH = {"prompt": "Hello", "max_new_tokens": 2, "temperature": 0.0}
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the forwarder app ---------------------------------------------------------------


async def test_the_forwarder_passes_no_credential_on_to_the_engine() -> None:
    seen: list[httpx.Headers] = []

    def engine(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"choices": [], "usage": {}})

    config = ForwarderConfig(engine_url="http://engine:5005", token=TOKEN)
    app = create_app(config, httpx.MockTransport(engine))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://forwarder") as client:
        answered = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(TOKEN))
        refused = await client.post("/v1/chat/completions", json=CHAT)
    assert (answered.status_code, refused.status_code) == (200, 401)
    (headers,) = seen  # the refused request never reached the engine
    assert "authorization" not in headers
    assert all(TOKEN not in value for value in headers.values())


# --- a forwarder process -------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-plane")


@pytest.fixture(scope="module")
def engine(logs: Path) -> Iterator[Process]:
    process = start_fake_engine(logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def forwarder(engine: Process, logs: Path) -> Iterator[Process]:
    process = start_forwarder(
        engine.url, logs, "--engine-api", "openai", "--served-model-name", "fake-model",
        token=TOKEN,
    )  # fmt: skip
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", LAUNCH),
        ("POST", "/stream", LAUNCH),
        ("POST", "/v1/chat/completions", CHAT),
        ("POST", "/v1/completions", {"model": "fake-model", "prompt": "x", "max_tokens": 2}),
        ("GET", "/v1/models", None),
    ],
)
def test_a_forwarder_answers_only_requests_carrying_its_token(
    forwarder: Process, method: str, path: str, body: Any
) -> None:
    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, forwarder.url + path, json=body, headers=headers, timeout=10)

    for headers in [{}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": TOKEN},
                    {"x-api-key": TOKEN}, {"Authorization": "Bearer"}]:  # fmt: skip
        refused = call(headers)
        assert refused.status_code == 401, headers
        assert TOKEN not in refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
    assert call(bearer(TOKEN)).status_code == 200


def test_a_forwarders_probes_and_metrics_need_no_token(forwarder: Process) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(forwarder.url + path, timeout=10).status_code == 200, path
    metrics = httpx.get(forwarder.url + "/metrics", timeout=10).text
    # Counts only: no model, prompt, owner or endpoint name (Prometheus scrapes it).
    names = {line.split()[0] for line in metrics.splitlines() if not line.startswith("#")}
    assert names == {
        "llm_launch_requests_in_flight",
        "llm_launch_requests_total",
        "llm_launch_requests_rejected_total",
    }


def test_a_forwarder_without_a_token_refuses_to_start(engine: Process) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    argv = [sys.executable, "-m", "llm_launch.runtime.forwarder", "--engine-url", engine.url,
            "--port", str(free_port())]  # fmt: skip
    for environ in (env, {**env, TOKEN_ENV: ""}):
        done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert TOKEN_ENV in done.stderr and "--no-token" in done.stderr


def test_a_forwarder_started_with_no_token_answers_anyone(engine: Process, logs: Path) -> None:
    process = start_forwarder(engine.url, logs, "--engine-api", "openai", "--no-token", token=None)
    try:
        chat = httpx.post(process.url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert chat.status_code == 200
    finally:
        process.stop()


def test_the_forwarder_takes_no_token_on_its_command_line(engine: Process) -> None:
    argv = [sys.executable, "-m", "llm_launch.runtime.forwarder", "--engine-url", engine.url,
            "--token", TOKEN]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


# --- the store -----------------------------------------------------------------------


def test_the_migration_gives_every_existing_endpoint_its_own_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO endpoints VALUES (:id, 'alice', :name, '{}', 'READY', NULL, 1, "
                    "0, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": f"end_{n}", "name": f"e{n}"},
            )
    engine.dispose()
    database.migrate(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        tokens = [row[0] for row in db.execute("SELECT forwarder_token FROM endpoints")]
    assert len(tokens) == 3 and len(set(tokens)) == 3
    assert all(len(token) >= 43 for token in tokens)


# --- a real local server -------------------------------------------------------------

KEY = "data-plane-key-0123456789"
MARKER = "LLM_LAUNCH_TEST_MARKER"


class Deployment:
    def __init__(self, url: str, data_dir: Path, client: httpx.Client) -> None:
        self.url, self.data_dir, self.client = url, data_dir, client

    def endpoint(self, name: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/llm/model-endpoints/{name}").json())

    def forwarder(self, name: str) -> str:
        url = forwarder_url(self.data_dir, str(self.endpoint(name)["id"]))
        assert url is not None
        return url

    def token(self, name: str) -> str:
        with sqlite3.connect(self.data_dir / "db.sqlite") as db:
            (token,) = db.execute(
                "SELECT forwarder_token FROM endpoints WHERE name = ?", (name,)
            ).fetchone()
        return str(token)

    def pids(self, name: str) -> dict[str, int]:
        (group,) = group_records(self.data_dir, str(self.endpoint(name)["id"]))
        return {p["name"]: p["pid"] for p in group["processes"]}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("data-plane-server")
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
        MARKER: str(data_dir),
        "LLM_LAUNCH_PASS_ENV": MARKER,  # spawned processes inherit only allow-listed names
    }
    server = simulated_local_server(data_dir, env).start()
    client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60)
    try:
        for name in ("first", "second"):
            body = endpoint_body(name=name, inference_framework="sglang", min_workers=1)
            client.post("/v1/llm/model-endpoints", json=body).raise_for_status()
        for name in ("first", "second"):
            wait_for(client, name, lambda e: e["status"] == "READY")
        yield Deployment(server.url, data_dir, client)
    finally:
        for name in ("first", "second"):
            client.delete(f"/v1/llm/model-endpoints/{name}")
        client.close()
        server.stop()
        kill_marked(MARKER, data_dir)


def test_an_endpoints_forwarder_answers_the_api_but_not_a_direct_caller(
    deployment: Deployment,
) -> None:
    predict = deployment.forwarder("first") + "/predict"
    assert httpx.post(predict, json=LAUNCH, timeout=30).status_code == 401
    assert httpx.post(predict, json=LAUNCH, headers=bearer("guess"), timeout=30).status_code == 401
    # Another endpoint's token does not open this one.
    other = bearer(deployment.token("second"))
    assert httpx.post(predict, json=LAUNCH, headers=other, timeout=30).status_code == 401
    routed = deployment.client.post(
        "/v1/llm/completions-sync", params={"model_endpoint_name": "first"}, json=LAUNCH
    )
    assert routed.status_code == 200, routed.text
    chat = {"model": "first", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert deployment.client.post("/v2/chat/completions", json=chat).status_code == 200


def test_each_endpoint_has_its_own_token(deployment: Deployment) -> None:
    first, second = deployment.token("first"), deployment.token("second")
    assert first != second and len(first) >= 43


def test_the_token_is_in_no_response_log_or_command_line(deployment: Deployment) -> None:
    token = deployment.token("first")
    client = deployment.client
    bodies = [
        client.get("/v1/llm/model-endpoints/first").text,
        client.get("/v1/llm/model-endpoints").text,
        client.get("/v1/llm/model-endpoints", params={"name": "first"}).text,
        client.get("/v1/llm/model-endpoints/first/logs", params={"forwarder": "true"}).text,
        client.get("/v1/llm/model-endpoints/first/logs", params={"rank": 0}).text,
    ]
    for body in bodies:
        assert token not in body
    for path in deployment.data_dir.rglob("*.log"):
        assert token not in path.read_text(errors="replace"), path
    for name, pid in deployment.pids("first").items():
        argv = cmdline(pid)
        assert argv is not None, name
        assert all(token not in item for item in argv), name


def test_only_the_forwarder_process_holds_the_token(deployment: Deployment) -> None:
    token = deployment.token("first")
    holders = set(processes_with_env(TOKEN_ENV, token))
    pids = deployment.pids("first")
    assert holders == {pids["forwarder"]}
