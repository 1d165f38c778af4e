"""`llm-launch gateway --processes 2` beside a `llm-launch serve` on one database: the
gateway processes route completions to the groups the server's reconciler runs (through
the targets it stores), keep owners apart, follow a delete made through the server once
their table refreshed, refuse bad keys, and serve nothing but the inference routes.
The migration that adds the stored targets applies on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest

from llm_launch.store.database import migrate
from tests.builders import endpoint_body
from tests.support.databases import fresh_postgres_database
from tests.support.local_groups import (
    cmdline,
    forwarder_url,
    kill_marked,
    processes_with_env,
    wait_for,
)
from tests.support.server import RunningServer, free_port, simulated_local_server, wait_healthy

ALICE = "gateway-alice-key-0123456789abcdef"
BOB = "gateway-bob-key-0123456789abcdef"
KEYS = f"alice:{ALICE},bob:{BOB}"
MARKER = "LLM_LAUNCH_TEST_GATEWAY_MARKER"
SYNC = "/v1/llm/completions-sync"
PROMPT = {"prompt": "Say hello", "max_new_tokens": 5, "temperature": 0.0}


class RunningGateway:
    """An `llm-launch gateway` subprocess (and its children) on a free port."""

    def __init__(self, database_url: str, data_dir: Path, processes: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"gateway-{self.port}.log"
        args = ["gateway", "--port", str(self.port), "--processes", str(processes)]
        self._args = [sys.executable, "-m", "llm_launch", *args, "--database-url", database_url]
        self._env = {**os.environ, "LLM_LAUNCH_API_KEYS": KEYS, MARKER: str(data_dir)}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> RunningGateway:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._args, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_healthy("gateway", self._process, self.url, self.log, timeout)
        return self

    def stop(self) -> int | None:
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Deployment:
    """A server (simulated local groups) and a two-process gateway on its SQLite file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.database = data_dir / "db.sqlite"
        env = {"LLM_LAUNCH_API_KEYS": KEYS, MARKER: str(data_dir), "LLM_LAUNCH_PASS_ENV": MARKER}
        self.server: RunningServer = simulated_local_server(data_dir, env).start()
        self.gateway = RunningGateway(f"sqlite:///{self.database}", data_dir, 2).start()
        self.api = httpx.Client(base_url=self.server.url, headers={"x-api-key": ALICE}, timeout=60)
        self.inference = httpx.Client(base_url=self.gateway.url, timeout=60)

    def create_ready(self, name: str) -> dict[str, object]:
        body = endpoint_body(name=name, min_workers=1, max_workers=1)
        created = self.api.post("/v1/llm/model-endpoints", json=body)
        assert created.status_code == 200, created.text
        return wait_for(self.api, name, lambda e: e["status"] == "READY")

    def stored_targets(self, endpoint_id: str) -> str | None:
        with sqlite3.connect(self.database) as db:
            row = db.execute("SELECT targets FROM endpoints WHERE id = ?", (endpoint_id,))
            value: str | None = row.fetchone()[0]
        return value

    def complete(self, name: str, key: str = ALICE) -> httpx.Response:
        params = {"model_endpoint_name": name}
        return self.inference.post(SYNC, params=params, json=PROMPT, headers={"x-api-key": key})

    def poll(self, name: str, status: int, timeout: float = 30.0) -> httpx.Response:
        """The gateway's answer once it is `status` (its table refreshes every second)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.complete(name)
            if response.status_code == status or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("gateway")
    deployment = Deployment(data_dir)
    try:
        yield deployment
    finally:
        deployment.gateway.stop()
        deployment.server.stop()
        kill_marked(MARKER, data_dir)


def test_a_completion_through_the_gateway_reaches_the_endpoints_group(
    deployed: Deployment,
) -> None:
    endpoint = deployed.create_ready("through-gateway")
    group = forwarder_url(deployed.data_dir, str(endpoint["id"]))
    assert deployed.stored_targets(str(endpoint["id"])) == f'["{group}"]'

    answer = deployed.poll("through-gateway", 200)

    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["num_completion_tokens"] > 0


def test_another_owners_endpoint_is_a_404_at_the_gateway(deployed: Deployment) -> None:
    deployed.create_ready("alices-only")
    assert deployed.poll("alices-only", 200).status_code == 200

    answer = deployed.complete("alices-only", key=BOB)

    assert answer.status_code == 404
    assert "alices-only" in answer.json()["detail"]


def test_after_a_delete_through_the_server_the_gateway_answers_404(deployed: Deployment) -> None:
    deployed.create_ready("deleted-later")
    assert deployed.poll("deleted-later", 200).status_code == 200

    assert deployed.api.delete("/v1/llm/model-endpoints/deleted-later").status_code == 200
    answer = deployed.poll("deleted-later", 404)

    assert answer.status_code == 404, answer.text


def test_the_gateway_refuses_a_bad_key(deployed: Deployment) -> None:
    answer = deployed.complete("through-gateway", key="not-a-key-0123456789abcdef")

    assert answer.status_code == 401


def test_the_gateway_answers_a_control_plane_path_with_a_404_naming_the_api(
    deployed: Deployment,
) -> None:
    answer = deployed.inference.get("/v1/llm/model-endpoints", headers={"x-api-key": ALICE})

    assert answer.status_code == 404
    assert "control-plane API" in answer.json()["detail"]


@pytest.mark.parametrize("database", [None, "sqlite:///{tmp}/shared.db"])
def test_sqlite_is_refused_inside_a_cluster_and_nothing_is_created(
    tmp_path: Path, database: str | None
) -> None:
    env = {**os.environ, "LLM_LAUNCH_API_KEYS": KEYS,
           "KUBERNETES_SERVICE_HOST": "10.96.0.1"}  # fmt: skip  # what the kubelet sets
    command = [sys.executable, "-m", "llm_launch", "gateway", "--port", str(free_port()),
               "--data-dir", str(tmp_path)]  # fmt: skip
    if database is not None:
        command += ["--database-url", database.format(tmp=tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    said = " ".join(result.stderr.split())
    assert "refusing SQLite inside a cluster" in said
    assert "PostgreSQL database the control plane uses" in said
    assert list(tmp_path.iterdir()) == []  # no database file made, nothing migrated


def test_stopping_the_gateway_stops_all_its_processes(tmp_path: Path) -> None:
    migrate(f"sqlite:///{tmp_path / 'db.sqlite'}")
    gateway = RunningGateway(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, 2).start()
    servers = [
        pid
        for pid in processes_with_env(MARKER, str(tmp_path))
        if "spawn_main" in " ".join(cmdline(pid) or [])
    ]
    assert len(servers) == 2

    assert gateway.stop() == 0
    assert processes_with_env(MARKER, str(tmp_path)) == []


def test_the_stored_targets_migration_applies_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    migrate(f"sqlite:///{database}")
    with sqlite3.connect(database) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(endpoints)")}
    assert "targets" in columns


def test_the_stored_targets_migration_applies_on_postgresql() -> None:
    with fresh_postgres_database() as url:
        migrate(url)
        with psycopg.connect(url) as connection:
            rows = connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'endpoints' AND is_nullable = 'YES'"
            ).fetchall()
    assert "targets" in {column for (column,) in rows}


def test_at_the_default_log_level_completions_leave_no_access_line_other_requests_do(
    deployed: Deployment,
) -> None:
    deployed.create_ready("quiet-log")
    assert deployed.poll("quiet-log", 200).status_code == 200
    for _ in range(3):
        assert deployed.complete("quiet-log").status_code == 200
    deployed.inference.get("/v1/llm/model-endpoints", headers={"x-api-key": ALICE})

    log = deployed.gateway.log()

    assert SYNC not in log  # no line per completion (the hot path), whatever its status
    assert '"GET /v1/llm/model-endpoints HTTP/1.1" 404' in log  # uvicorn's access line


def test_a_server_restart_leaves_the_stored_targets_of_the_groups_it_adopts(
    tmp_path: Path,
) -> None:
    """The server stops and starts again (an upgrade, a crash); the endpoint's groups keep
    running and the new server adopts them. Gateways route by the stored targets, so
    these must stay in place throughout: cleared, every gateway answers 503 until the
    reconciler visits the endpoint again, a whole pass later."""
    deployment = Deployment(tmp_path)
    try:
        endpoint_id = str(deployment.create_ready("kept-across-restart")["id"])
        before = deployment.stored_targets(endpoint_id)
        assert before is not None
        deployment.server.stop()
        seen: set[str | None] = set()
        watching = threading.Event()

        def watch() -> None:  # every 5 ms: a clearing lasts a reconciler pass (0.5 s here)
            while not watching.wait(0.005):
                seen.add(deployment.stored_targets(endpoint_id))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            deployment.server.start()
            wait_for(deployment.api, "kept-across-restart", lambda e: e["status"] == "READY")
            answers = [deployment.complete("kept-across-restart") for _ in range(20)]
            time.sleep(1.5)  # three more passes
        finally:
            watching.set()
            watcher.join()

        assert seen == {before}
        assert [a.status_code for a in answers] == [200] * 20, answers[-1].text
    finally:
        deployment.gateway.stop()
        deployment.server.stop()
        kill_marked(MARKER, tmp_path)


def test_the_openai_client_chats_and_streams_through_the_gateway(deployed: Deployment) -> None:
    deployed.create_ready("openai-through-gateway")
    assert deployed.poll("openai-through-gateway", 200).status_code == 200
    client = openai.OpenAI(base_url=f"{deployed.gateway.url}/v2", api_key=ALICE, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Say hello"}]

    answer = client.chat.completions.create(
        model="openai-through-gateway", messages=messages, max_tokens=5
    )
    chunks = client.chat.completions.create(
        model="openai-through-gateway", messages=messages, max_tokens=5, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert answer.model == "openai-through-gateway"
    assert answer.choices[0].message.content
    assert streamed
    with pytest.raises(openai.NotFoundError):  # another owner's endpoint, as on serve
        openai.OpenAI(
            base_url=f"{deployed.gateway.url}/v2", api_key=BOB, max_retries=0
        ).chat.completions.create(model="openai-through-gateway", messages=messages)
