"""The API's request handling under hostile input (issue 8): size limit, authentication
before the body is read, parse errors in the promised shape, slow-header clients, and the
security scheme in /openapi.json. Every test talks to a real `llm-launch serve` process."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from llm_launch.http_timeouts import DEFAULT_HEADER_TIMEOUT_S, header_timeout_protocol
from tests.builders import endpoint_body
from tests.conftest import ALICE_KEY, API_KEYS_ENV
from tests.integration.test_forwarder import start_forwarder
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer, free_port

ENDPOINTS = "/v1/llm/model-endpoints"
LIMIT = 1024 * 1024  # the default --max-request-bytes
HEADER_TIMEOUT_S = 1  # short, so that the slow-header tests finish soon
# Far longer than HEADER_TIMEOUT_S: only a server that never closes runs into it.
GIVE_UP_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("api-requests")
    env = {
        **API_KEYS_ENV,
        "LLM_LAUNCH_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "LLM_LAUNCH_KEEP_ALIVE_TIMEOUT_S": "5",
    }
    running = RunningServer(f"sqlite:///{data_dir / 'db.sqlite'}", data_dir, env).start()
    try:
        yield running
    finally:
        running.stop()


# `alice` (tests/conftest.py) talks to this module's `server`.


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    """The README's promise: `detail` (one line) and `errors` (each `field` and `message`)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert "\n" not in body["detail"]
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"field", "message"}
    return body


def stored(alice: httpx.Client, name: str) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = alice.get(ENDPOINTS, params={"name": name}).json()[
        "model_endpoints"
    ]
    return models


def raw_request(server: RunningServer, head: bytes) -> bytes:
    """Send a request head (no body) over a plain socket; the server's first answer bytes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_S) as sock:
        sock.sendall(head)
        return sock.recv(65536)


class TestSizeLimit:
    def test_a_body_over_the_limit_announced_by_content_length_is_413_and_stores_nothing(
        self, alice: httpx.Client
    ) -> None:
        body = endpoint_body(metadata={"padding": "x" * (2 * LIMIT)})
        response = alice.post(ENDPOINTS, json=body)
        assert_error_shape(response, 413)
        assert stored(alice, body["name"]) == []

    def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(
        self, alice: httpx.Client
    ) -> None:
        body = endpoint_body(metadata={"padding": "x" * (2 * LIMIT)})
        encoded = json.dumps(body).encode()

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            for start in range(0, len(encoded), 64 * 1024):
                yield encoded[start : start + 64 * 1024]

        response = alice.post(
            ENDPOINTS, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_error_shape(response, 413)
        assert stored(alice, body["name"]) == []

    def test_an_announced_oversize_body_is_refused_without_waiting_for_it(
        self, server: RunningServer
    ) -> None:
        head = (
            f"POST {ENDPOINTS} HTTP/1.1\r\nhost: x\r\nx-api-key: {ALICE_KEY}\r\n"
            "content-type: application/json\r\ncontent-length: 50000000\r\n\r\n"
        ).encode()
        assert raw_request(server, head).startswith(b"HTTP/1.1 413 ")

    def test_a_body_under_the_limit_is_still_accepted(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        # Whitespace makes it large without breaking any rule on the fields themselves.
        padded = json.dumps(body).encode() + b" " * (LIMIT - 1024)
        response = alice.post(
            ENDPOINTS, content=padded, headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        assert len(stored(alice, body["name"])) == 1


HOSTILE_BODIES = {
    "malformed JSON": b'{"name": ',
    "wrong types": json.dumps({"name": 5, "min_workers": "many"}).encode(),
    "not an object": b"[1, 2, 3]",
    "nested 100,000 deep": b"[" * 100_000,
    "over the size limit": json.dumps(endpoint_body(metadata={"p": "x" * (2 * LIMIT)})).encode(),
    "empty": b"",
}
PROTECTED_WRITES = [
    ("POST", ENDPOINTS),
    ("PUT", f"{ENDPOINTS}/some-endpoint"),
    ("POST", "/v1/llm/completions-sync?model_endpoint_name=some-endpoint"),
    ("POST", "/v1/llm/completions-stream?model_endpoint_name=some-endpoint"),
    ("POST", "/v2/chat/completions"),
    ("POST", "/v2/completions"),
]


class TestAuthenticationComesFirst:
    @pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
    @pytest.mark.parametrize("method, path", PROTECTED_WRITES)
    @pytest.mark.parametrize(
        "headers", [{}, {"x-api-key": "not-a-real-key-000000000"}], ids=["no key", "wrong key"]
    )
    def test_an_unauthenticated_request_is_401_whatever_its_body(
        self,
        server: RunningServer,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        response = httpx.request(
            method,
            f"{server.url}{path}",
            content=body,
            headers={"content-type": "application/json", **headers},
            timeout=60,
        )
        assert_error_shape_401(response)

    @pytest.mark.parametrize(
        "method, path",
        [
            ("GET", ENDPOINTS),
            ("GET", f"{ENDPOINTS}/x"),
            ("GET", f"{ENDPOINTS}/x/logs?group=not-a-number"),
            ("DELETE", f"{ENDPOINTS}/x"),
        ],
    )
    def test_a_read_or_delete_without_a_key_is_401_even_with_bad_parameters(
        self, server: RunningServer, method: str, path: str
    ) -> None:
        assert_error_shape_401(httpx.request(method, f"{server.url}{path}"))

    def test_health_metrics_and_the_openapi_document_need_no_key(
        self, server: RunningServer
    ) -> None:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert httpx.get(f"{server.url}{path}").status_code == 200, path


def assert_error_shape_401(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code == 401, body
    assert "WWW-Authenticate" in response.headers
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)


UNPARSABLE = {
    "malformed JSON": b'{"name": ',
    "trailing garbage": b'{"name": "a"} x',
    "not an object": b"[1, 2, 3]",
    "a string": b'"hello"',
    "nested 100,000 deep": b"[" * 100_000,
    "an object nested 100,000 deep": b'{"a":' * 100_000,
    "closed nesting 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "empty": b"",
}


class TestUnparsableBodies:
    @pytest.mark.parametrize("body", UNPARSABLE.values(), ids=UNPARSABLE.keys())
    @pytest.mark.parametrize("method, path", [("POST", ENDPOINTS), ("PUT", f"{ENDPOINTS}/x")])
    def test_a_body_that_does_not_parse_is_4xx_with_detail_and_errors(
        self, alice: httpx.Client, method: str, path: str, body: bytes
    ) -> None:
        response = alice.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, response.text
        assert_error_shape(response, response.status_code)


def readable_and_closed(sock: socket.socket, wait_s: float) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    ready, _, _ = select.select([sock], [], [], wait_s)
    if not ready:
        return False
    try:
        return sock.recv(65536) == b""
    except ConnectionError:
        return True


class TestSlowHeaders:
    def test_a_connection_that_never_sends_its_headers_is_closed(
        self, server: RunningServer
    ) -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"GET {ENDPOINTS} HTTP/1.1\r\nhost: x\r\n".encode())
            assert readable_and_closed(sock, GIVE_UP_S)

    def test_a_connection_that_sends_nothing_is_closed(self, server: RunningServer) -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            assert readable_and_closed(sock, GIVE_UP_S)

    def test_headers_sent_one_byte_at_a_time_do_not_hold_the_connection(
        self, server: RunningServer
    ) -> None:
        head = f"GET {ENDPOINTS} HTTP/1.1\r\nhost: x\r\nx-pad: {'p' * 1000}\r\n\r\n".encode()
        assert closed_while_trickling(server, head)

    def test_a_kept_alive_connection_that_trickles_its_next_request_is_closed(
        self, server: RunningServer
    ) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            head = f"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: {'p' * 1000}\r\n\r\n".encode()
            assert trickle_until_closed(sock, head)

    def test_a_body_that_stops_arriving_is_answered_408_and_stores_nothing(
        self, server: RunningServer, alice: httpx.Client
    ) -> None:
        body = json.dumps(endpoint_body(name="stalled-body")).encode()
        head = (
            f"POST {ENDPOINTS} HTTP/1.1\r\nhost: x\r\nx-api-key: {ALICE_KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_S) as sock:
            sock.sendall(head.encode() + body[:10])  # and then nothing more
            answer = b""
            while chunk := sock.recv(65536):  # the answer, until the server closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"errors"' in answer
        assert stored(alice, "stalled-body") == []


def closed_while_trickling(server: RunningServer, head: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        return trickle_until_closed(sock, head)


def trickle_until_closed(sock: socket.socket, head: bytes) -> bool:
    """Send `head` a byte at a time (each well before a keep-alive timeout would fire);
    True if the server closes the connection before the head is complete."""
    deadline = time.monotonic() + GIVE_UP_S
    for byte in head[:-1]:
        try:
            sock.sendall(bytes([byte]))
        except ConnectionError:
            return True
        if readable_and_closed(sock, 0.1) or time.monotonic() > deadline:
            return time.monotonic() <= deadline
    return False


class TestOpenApiSecurity:
    def test_every_protected_operation_requires_the_api_key_scheme(
        self, server: RunningServer
    ) -> None:
        document = httpx.get(f"{server.url}/openapi.json").json()
        schemes = document["components"]["securitySchemes"]
        assert {"type": "http", "scheme": "basic"} in [
            {k: v for k, v in s.items() if k in ("type", "scheme")} for s in schemes.values()
        ]
        assert any(s.get("scheme") == "bearer" for s in schemes.values())
        assert any(
            s.get("type") == "apiKey" and s.get("in") == "header" and s.get("name") == "x-api-key"
            for s in schemes.values()
        )
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if path in ("/healthz", "/readyz"):
                    assert not operation.get("security"), (method, path)
                    continue
                requirements = operation.get("security")
                assert requirements, (method, path)
                assert {name for r in requirements for name in r} == set(schemes), (method, path)
                assert "401" in operation["responses"], (method, path)


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """PostgreSQL refuses a NUL in text, where SQLite stores it: the stricter database."""
    data_dir = tmp_path_factory.mktemp("api-requests-postgres")
    with fresh_postgres_database() as url:
        running = RunningServer(url, data_dir, API_KEYS_ENV).start()
        try:
            yield running
        finally:
            running.stop()


LAUNCH_BODY = {"prompt": "x", "max_new_tokens": 1, "temperature": 0}


class TestEndpointNamesInTheUrl:
    @pytest.mark.parametrize(
        "method, path",
        [
            ("GET", f"{ENDPOINTS}/a%00b"),
            ("PUT", f"{ENDPOINTS}/a%00b"),
            ("DELETE", f"{ENDPOINTS}/a%00b"),
            ("GET", f"{ENDPOINTS}/a%00b/logs"),
            ("GET", f"{ENDPOINTS}/{'a' * 5000}"),
        ],
    )
    def test_a_name_no_endpoint_can_have_is_a_422_naming_it_not_a_server_error(
        self, postgres_server: RunningServer, method: str, path: str
    ) -> None:
        response = httpx.request(
            method,
            f"{postgres_server.url}{path}",
            headers={"x-api-key": ALICE_KEY},
            json={"min_workers": 1} if method == "PUT" else None,
        )
        body = assert_error_shape(response, 422)
        assert [e["field"] for e in body["errors"]] == ["name"]

    @pytest.mark.parametrize("name", ["a%00b", "A" * 5000], ids=["a NUL", "5000 characters"])
    def test_a_list_filtered_by_a_name_no_endpoint_can_have_is_empty_not_a_server_error(
        self, postgres_server: RunningServer, name: str
    ) -> None:
        response = httpx.get(
            f"{postgres_server.url}{ENDPOINTS}?name={name}", headers={"x-api-key": ALICE_KEY}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_endpoints"] == []

    @pytest.mark.parametrize(
        "path, body",
        [
            ("/v1/llm/completions-sync?model_endpoint_name=a%00b", LAUNCH_BODY),
            ("/v1/llm/completions-stream?model_endpoint_name=a%00b", LAUNCH_BODY),
            ("/v2/chat/completions", {"model": "a\u0000b", "messages": []}),
            ("/v2/completions", {"model": "a\u0000b", "prompt": "x"}),
            ("/v2/completions", {"model": "A" * 5000, "prompt": "x"}),
        ],
    )
    def test_a_completion_for_a_name_no_endpoint_can_have_is_a_404_not_a_server_error(
        self, postgres_server: RunningServer, path: str, body: dict[str, object]
    ) -> None:
        response = httpx.post(
            f"{postgres_server.url}{path}", headers={"x-api-key": ALICE_KEY}, json=body
        )
        assert response.status_code == 404, response.text
        assert response.json()["detail"].startswith("no endpoint named ")
        assert len(response.json()["detail"]) < 200  # the name is quoted cut short


class TestTheHeaderTimeoutProtocol:
    """The protocol both servers run (`serve`, and the forwarder with its default)."""

    def test_it_closes_a_connection_whose_head_is_late_and_serves_a_prompt_one(self) -> None:
        with uvicorn_serving(header_timeout_protocol(0.5)) as port:
            with socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
                assert readable_and_closed(sock, GIVE_UP_S)

    def test_between_requests_the_keep_alive_timeout_applies_not_the_header_timeout(
        self,
    ) -> None:
        with (
            uvicorn_serving(header_timeout_protocol(0.5), timeout_keep_alive=3) as port,
            socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S) as sock,
        ):
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            # Idle past the header timeout, within keep-alive: still served.
            assert not readable_and_closed(sock, 1.5)
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            assert readable_and_closed(sock, GIVE_UP_S)  # idle past keep-alive

    def test_pipelined_requests_are_answered_in_order_each_head_with_its_body(self) -> None:
        with (
            uvicorn_serving(header_timeout_protocol(10.0)) as port,
            socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S) as sock,
        ):
            sock.sendall(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n" * 3)
            answers = b""
            while answers.count(b"hello") < 3:
                chunk = sock.recv(65536)
                assert chunk, answers
                answers += chunk
            assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3
            assert answers.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_a_late_head_on_a_kept_alive_connection_closes_it(self) -> None:
        # keep-alive far beyond the test: the header deadline is what closes it
        with (
            uvicorn_serving(header_timeout_protocol(0.5), timeout_keep_alive=600) as port,
            socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S) as sock,
        ):
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
            assert readable_and_closed(sock, GIVE_UP_S)

    def test_the_forwarder_closes_a_connection_whose_head_never_completes(
        self, tmp_path: Path
    ) -> None:
        # Its default timeout (DEFAULT_HEADER_TIMEOUT_S) is well under GIVE_UP_S.
        assert DEFAULT_HEADER_TIMEOUT_S < GIVE_UP_S
        process = start_forwarder("http://127.0.0.1:9", tmp_path)
        try:
            with socket.create_connection(("127.0.0.1", process.port)) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                assert readable_and_closed(sock, GIVE_UP_S)
        finally:
            process.stop()

    def test_a_timeout_that_is_not_positive_is_refused(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            header_timeout_protocol(0)


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@contextmanager
def uvicorn_serving(protocol: type[asyncio.Protocol], **settings: Any) -> Iterator[int]:
    """A uvicorn server with `protocol` (and uvicorn `settings`) on a free port, in a
    thread; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        _hello,
        host="127.0.0.1",
        port=port,
        http=protocol,
        lifespan="off",
        log_level="warning",
        **settings,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=GIVE_UP_S)
