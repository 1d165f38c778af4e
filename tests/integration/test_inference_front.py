"""What `serve` hands uvicorn: `InferenceFront` takes the completion routes' POSTs before
FastAPI's middleware stack, and the HTTP protocol writes no access-log line for them.

The answers through the front are those through the app (tests/integration/
test_inference_routes.py runs every case both ways); here: which requests cross the
app's middleware, that the front's guard is as strict as the app's, and the access log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from llm_launch.api.app import create_app
from llm_launch.api.gateway import ROUTES, front
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.http_timeouts import header_timeout_protocol
from llm_launch.settings import Settings
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend
from tests.support.server import free_port

KEY = "alice-key-00000000000000"
LAUNCH = {"prompt": "hi", "max_new_tokens": 2, "temperature": 0.0}


class Recorder:
    """A middleware inside the app: the paths of the requests that crossed it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"].state.crossed.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=parse_api_keys(f"alice:{KEY}", source="test"),
        max_request_bytes=4096,
    )
    app = create_app(settings, lambda _: FakeBackend())
    app.state.crossed = []
    app.add_middleware(Recorder)
    served = front(app, settings.api_keys, settings.max_request_bytes, settings.header_timeout_s)
    with TestClient(served, headers={"x-api-key": KEY}) as test:
        test.post("/v1/llm/model-endpoints", json=endpoint_body(name="chat")).raise_for_status()
        yield test


def crossed(client: TestClient) -> list[str]:
    return client.app.app.state.crossed  # type: ignore[attr-defined, no-any-return]


def test_completions_skip_the_apps_middleware_and_the_api_does_not(client: TestClient) -> None:
    assert crossed(client) == ["/v1/llm/model-endpoints"]  # the create, through the app
    answer = client.post(
        "/v1/llm/completions-sync", params={"model_endpoint_name": "chat"}, json=LAUNCH
    )
    assert answer.status_code == 503  # the lean path's answer: no group is ready yet
    assert "no ready workers" in answer.json()["detail"]
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v2/chat/completions", json=chat).status_code == 503
    assert client.get("/v1/llm/model-endpoints/chat").status_code == 200
    assert crossed(client) == ["/v1/llm/model-endpoints", "/v1/llm/model-endpoints/chat"]


def test_the_fronts_guard_refuses_a_missing_key_and_an_oversized_body(
    client: TestClient,
) -> None:
    path = "/v1/llm/completions-sync?model_endpoint_name=chat"
    refused = client.post(path, json=LAUNCH, headers={"x-api-key": ""})
    assert refused.status_code == 401
    assert "missing API key" in refused.json()["detail"]
    big = client.post(path, content=b"x" * 5000, headers={"content-type": "application/json"})
    assert big.status_code == 413
    assert big.json()["errors"][0]["field"] == "body"


def test_other_methods_on_a_completion_path_go_to_the_app(client: TestClient) -> None:
    assert client.get("/v1/llm/completions-sync").status_code == 405  # FastAPI's answer
    assert crossed(client)[-1] == "/v1/llm/completions-sync"


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_no_access_log_line_for_quiet_paths_at_the_info_level() -> None:
    lines = Lines()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(lines)
    level = access.level
    access.setLevel(logging.INFO)
    port = free_port()
    protocol = header_timeout_protocol(10.0, quiet_paths=ROUTES)
    config = uvicorn.Config(
        _ok, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for path in ROUTES:  # several requests on one keep-alive connection
                assert http.post(path, content=b"{}").status_code == 200
            assert http.get("/v1/llm/model-endpoints").status_code == 200
            assert http.post("/v2/chat/completions", content=b"{}").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        access.removeHandler(lines)
        access.setLevel(level)
    assert len(lines.lines) == 1
    assert "/v1/llm/model-endpoints" in lines.lines[0]
