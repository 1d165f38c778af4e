"""The inference routes' errors, over the real app and store with an in-memory backend:
unknown or foreign endpoints, no ready group, a dead upstream, invalid bodies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llm_launch.api.app import create_app
from llm_launch.api.gateway import front
from llm_launch.config.api_keys import parse_api_keys
from llm_launch.settings import Settings
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend

ALICE, BOB = "alice-key-00000000000000", "bob-key-0000000000000000"
LAUNCH = {"prompt": "hi", "max_new_tokens": 2, "temperature": 0.0}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture(params=["app", "front"])
def client(
    request: pytest.FixtureRequest, tmp_path: Path, backend: FakeBackend
) -> Iterator[TestClient]:
    """Both ways in: the FastAPI app itself, and `serve`'s `InferenceFront` around it."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=parse_api_keys(f"alice:{ALICE}\nbob:{BOB}", source="test"),
        inference_timeout_s=0.5,
    )
    app = create_app(settings, lambda _: backend)
    if request.param == "front":
        app = front(app, settings.api_keys, settings.max_request_bytes, settings.header_timeout_s)  # type: ignore[assignment]
    with TestClient(app, headers={"x-api-key": ALICE}) as test:
        test.post("/v1/llm/model-endpoints", json=endpoint_body(name="chat")).raise_for_status()
        yield test


def sync(client: TestClient, name: str = "chat", **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/llm/completions-sync",
        params={"model_endpoint_name": name},
        json=LAUNCH,
        headers=headers,
    )


def test_an_unknown_endpoint_is_404(client: TestClient) -> None:
    assert sync(client, "nope").status_code == 404


def test_another_owners_endpoint_is_404_on_every_route(client: TestClient) -> None:
    assert sync(client, **{"x-api-key": BOB}).status_code == 404
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        client.post("/v2/chat/completions", json=chat, headers={"x-api-key": BOB}).status_code
        == 404
    )


def test_no_ready_group_is_503_with_the_status_and_reason(client: TestClient) -> None:
    response = sync(client)
    assert response.status_code == 503
    assert "no ready workers" in response.json()["detail"]
    assert "UPDATE_PENDING" in response.json()["detail"]


def test_a_dead_upstream_is_a_prompt_502(client: TestClient, backend: FakeBackend) -> None:
    backend.targets = lambda endpoint: [f"http://127.0.0.1:{closed_port()}"]  # type: ignore[method-assign]
    response = sync(client)
    assert response.status_code == 502
    assert "cannot connect" in response.json()["detail"]
    stream = client.post("/v2/completions", json={"model": "chat", "prompt": "x", "stream": True})
    assert stream.status_code == 502


def test_an_upstream_that_never_answers_is_a_504_not_a_hang(
    client: TestClient, backend: FakeBackend
) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        backend.targets = lambda endpoint: [f"http://127.0.0.1:{silent.getsockname()[1]}"]  # type: ignore[method-assign]
        response = sync(client)
        assert response.status_code == 504
        assert "did not answer within 0.5s" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"prompt": "x"}, "max_new_tokens"), ({**LAUNCH, "temperature": "hot"}, "temperature")],
)
def test_an_invalid_launch_body_is_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post(
        "/v1/llm/completions-sync", params={"model_endpoint_name": "chat"}, json=body
    )
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["errors"]}


def test_openai_routes_need_the_model_field_and_a_json_object(client: TestClient) -> None:
    missing = client.post("/v2/chat/completions", json={"messages": []})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "model"
    broken = client.post(
        "/v2/completions", content=b"[1, 2", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "body"


def test_inference_needs_an_api_key(client: TestClient) -> None:
    assert sync(client, **{"x-api-key": "wrong-key-00000000000"}).status_code == 401


class CannedUpstream:
    """A one-connection-at-a-time HTTP server that records each request head and answers
    `reply` (raw bytes): a stand-in forwarder for what the router sends and gets."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                self.heads.append(data.split(b"\r\n\r\n")[0])
                connection.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


def test_the_router_sends_the_endpoints_forwarder_token(
    client: TestClient, backend: FakeBackend
) -> None:
    answer = b'{"request_id":"r","output":{"text":"hi","num_completion_tokens":1}}'
    upstream = CannedUpstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
    )
    try:
        backend.targets = lambda endpoint: [upstream.url]  # type: ignore[method-assign]
        assert sync(client).status_code == 200
        (head,) = upstream.heads
    finally:
        upstream.close()
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    token = headers[b"Authorization"].removeprefix(b"Bearer ").decode()
    assert len(token) >= 43  # secrets.token_urlsafe(32), made at create
    assert token not in client.get("/v1/llm/model-endpoints/chat").text


def test_a_forwarder_refusing_the_token_is_a_502_not_the_callers_401(
    client: TestClient, backend: FakeBackend
) -> None:
    refusal = b'{"error":{"type":"unauthorized"}}'
    upstream = CannedUpstream(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(refusal), refusal)
    )
    try:
        backend.targets = lambda endpoint: [upstream.url]  # type: ignore[method-assign]
        response = sync(client)
    finally:
        upstream.close()
    assert response.status_code == 502
    assert "401" in response.json()["detail"]


def canned(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


DRAINING = canned(
    b"503 Service Unavailable",
    b'{"error":{"type":"draining","message":"this group is draining"}}',
)
ANSWER = canned(b"200 OK", b'{"request_id":"r","output":{"text":"hi","num_completion_tokens":1}}')


@pytest.mark.parametrize("route", ["launch", "openai"])
def test_a_request_refused_by_a_draining_group_goes_to_another_group(
    client: TestClient, backend: FakeBackend, route: str
) -> None:
    """A draining forwarder refuses before it forwards anything, so the request is safe
    to send again; the caller must not lose it to a scale-down, rollout or delete."""
    draining, serving = CannedUpstream(DRAINING), CannedUpstream(ANSWER)
    try:
        backend.targets = lambda endpoint: [draining.url, serving.url]  # type: ignore[method-assign]
        sent = 0
        # Ties are drawn at random: send until the router has tried the draining group
        # first at least once (each try is a coin flip; 64 misses in a row do not happen).
        while not draining.heads and sent < 64:
            if route == "launch":
                response = sync(client)
            else:
                body = {"model": "chat", "prompt": "hi", "max_tokens": 1}
                response = client.post("/v2/completions", json=body)
            assert response.status_code == 200, response.text
            sent += 1
        assert draining.heads and len(serving.heads) == sent
    finally:
        draining.close()
        serving.close()


def test_a_request_to_an_endpoint_whose_groups_all_drain_is_a_503_saying_so(
    client: TestClient, backend: FakeBackend
) -> None:
    draining = CannedUpstream(DRAINING)
    try:
        backend.targets = lambda endpoint: [draining.url]  # type: ignore[method-assign]
        response = sync(client)
    finally:
        draining.close()
    assert response.status_code == 503, response.text
    assert "draining" in response.json()["detail"]
