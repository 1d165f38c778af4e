"""The forwarder as a real process, in front of a real fake engine, over loopback sockets.

Every process started here is stopped by its fixture. Nothing is timed: incremental
streaming is proven by the fake engine holding its last event until released.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.processes import WAIT_S, Process, start_fake_engine
from tests.support.server import free_port


def start_forwarder(engine_url: str, log_dir: Path, *args: str) -> Process:
    """A forwarder answering anyone: these tests are about forwarding; its token is
    tested in tests/security/test_data_plane.py."""
    port = free_port()
    argv = [sys.executable, "-m", "llm_launch.runtime.forwarder", "--port", str(port),
            "--engine-url", engine_url, "--no-token", *args]  # fmt: skip
    return Process(argv, port, log_dir / f"forwarder-{port}.log")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("forwarder")


@pytest.fixture(scope="module")
def engine(logs: Path) -> Iterator[Process]:
    process = start_fake_engine(logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sglang(engine: Process, logs: Path) -> Iterator[Process]:
    process = start_forwarder(
        engine.url, logs, "--engine-api", "sglang", "--ready-check-path", "/health_generate",
        "--ready-cache-s", "0.1",
    )  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(scope="module")
def vllm(engine: Process, logs: Path) -> Iterator[Process]:
    process = start_forwarder(
        engine.url, logs, "--engine-api", "openai", "--served-model-name", "fake-model",
        "--ready-cache-s", "0.1",
    )  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def fresh_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "engine" in request.fixturenames:
        url = request.getfixturevalue("engine").url
        for path, body in [("/fake/health", {"ok": True}), ("/fake/hold", {"on": False})]:
            httpx.post(url + path, json=body, timeout=5).raise_for_status()
        httpx.post(url + "/fake/release", timeout=5).raise_for_status()


def state(engine: Process) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(engine.url + "/fake/state", timeout=5).json()
    return result


def control(engine: Process, path: str, body: dict[str, Any] | None = None) -> None:
    httpx.post(engine.url + path, json=body or {}, timeout=5).raise_for_status()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def launch_body(**overrides: Any) -> dict[str, Any]:
    return {"prompt": "Hello", "max_new_tokens": 4, "temperature": 0.5, **overrides}


def data_events(lines: Iterator[str]) -> Iterator[Any]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


class TestPredict:
    def test_sglang_generates_and_answers_in_launchs_shape(
        self, sglang: Process, engine: Process
    ) -> None:
        response = httpx.post(sglang.url + "/predict", json=launch_body(top_k=5), timeout=WAIT_S)
        assert response.status_code == 200
        assert response.json()["output"] == {
            "text": "t0 t1 t2 t3 ",
            "num_prompt_tokens": 3,
            "num_completion_tokens": 4,
            "tokens": None,
        }
        seen = state(engine)
        assert seen["last_path"] == "/generate"
        assert seen["last_body"]["sampling_params"] == {
            "max_new_tokens": 4,
            "temperature": 0.5,
            "top_k": 5,
        }

    def test_an_openai_engine_gets_a_completion_for_the_served_model(
        self, vllm: Process, engine: Process
    ) -> None:
        response = httpx.post(vllm.url + "/predict", json=launch_body(), timeout=WAIT_S)
        assert response.json()["output"]["text"] == "t0 t1 t2 t3 "
        seen = state(engine)
        assert seen["last_path"] == "/v1/completions"
        assert seen["last_body"]["model"] == "fake-model"

    def test_an_invalid_request_is_422_naming_the_field(self, sglang: Process) -> None:
        response = httpx.post(sglang.url + "/predict", json=launch_body(top_p=2), timeout=WAIT_S)
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "top_p"


class TestStreaming:
    def test_launch_chunks_reach_the_client_before_the_engine_sent_its_last(
        self, sglang: Process, engine: Process
    ) -> None:
        control(engine, "/fake/hold", {"on": True})
        finished_before = state(engine)["streams_finished"]
        body = launch_body(return_token_log_probs=True)
        with httpx.stream("POST", sglang.url + "/stream", json=body, timeout=WAIT_S) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = data_events(response.iter_lines())
            first = next(chunks)
            # The engine is still holding its last event: nothing could have buffered it all.
            assert state(engine)["held"] == 1
            assert state(engine)["streams_finished"] == finished_before
            control(engine, "/fake/release")
            rest = list(chunks)
        outputs = [c["output"] for c in [first, *rest]]
        assert [o["text"] for o in outputs] == ["t0 ", "t1 ", "t2 ", "t3 "]
        assert [o["finished"] for o in outputs] == [False, False, False, True]
        assert outputs[-1]["token"] == {"token": "t3 ", "log_prob": -0.5}

    def test_the_openai_client_streams_chat_through_the_pass_through(
        self, sglang: Process, engine: Process
    ) -> None:
        control(engine, "/fake/hold", {"on": True})
        client = openai.OpenAI(base_url=sglang.url + "/v1", api_key="unused", timeout=WAIT_S)
        stream = client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=3,
            stream=True,
        )
        chunks = iter(stream)
        first = next(chunks)
        assert first.choices[0].delta.content == "t0 "
        assert state(engine)["held"] == 1
        control(engine, "/fake/release")
        rest = [c.choices[0].delta.content for c in chunks]
        assert rest == ["t1 ", "t2 "]

    def test_a_non_streamed_chat_completion_passes_through(self, vllm: Process) -> None:
        client = openai.OpenAI(base_url=vllm.url + "/v1", api_key="unused", timeout=WAIT_S)
        answer = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert answer.choices[0].message.content == "t0 t1 "
        assert [m.id for m in client.models.list()] == ["fake-model"]

    def test_a_client_that_leaves_mid_stream_stops_the_engines_stream(
        self, sglang: Process, engine: Process
    ) -> None:
        control(engine, "/fake/hold", {"on": True})
        disconnects = state(engine)["disconnects"]
        body = json.dumps(launch_body()).encode()
        with socket.create_connection(("127.0.0.1", sglang.port), timeout=WAIT_S) as sock:
            sock.sendall(
                b"POST /stream HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            received = b""
            while b"data: " not in received:
                received += sock.recv(65536)
        eventually(lambda: state(engine)["disconnects"] == disconnects + 1, "engine saw it")
        assert state(engine)["held"] == 0


class TestReadiness:
    def test_readyz_follows_the_engines_generation_check(
        self, sglang: Process, engine: Process
    ) -> None:
        assert httpx.get(sglang.url + "/readyz", timeout=WAIT_S).status_code == 200
        control(engine, "/fake/health", {"ok": False})
        eventually(lambda: httpx.get(sglang.url + "/readyz").status_code == 503, "not ready")
        reason = httpx.get(sglang.url + "/readyz").json()["reason"]
        assert "/health_generate answered 503" in reason
        control(engine, "/fake/health", {"ok": True})
        eventually(lambda: httpx.get(sglang.url + "/readyz").status_code == 200, "ready again")

    def test_without_a_check_route_readiness_is_a_one_token_generation(
        self, vllm: Process, engine: Process
    ) -> None:
        assert httpx.get(vllm.url + "/readyz", timeout=WAIT_S).status_code == 200
        control(engine, "/fake/health", {"ok": False})
        eventually(lambda: httpx.get(vllm.url + "/readyz").status_code == 503, "not ready")
        reason = httpx.get(vllm.url + "/readyz").json()["reason"]
        assert "POST /v1/completions answered 503" in reason


class TestEngineDown:
    @pytest.fixture(scope="class")
    @classmethod
    def orphan(cls, logs: Path) -> Iterator[Process]:
        """A forwarder whose engine port has nothing listening."""
        process = start_forwarder(f"http://127.0.0.1:{free_port()}", logs,
                                  "--ready-check-path", "/health_generate")  # fmt: skip
        yield process
        process.stop()

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/predict", launch_body()),
            ("/stream", launch_body()),
            ("/v1/chat/completions", {"messages": [], "stream": True}),
        ],
    )
    def test_requests_are_502_with_a_json_error(
        self, orphan: Process, path: str, body: Any
    ) -> None:
        response = httpx.post(orphan.url + path, json=body, timeout=WAIT_S)
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "engine_unavailable"

    def test_the_forwarder_is_alive_but_not_ready(self, orphan: Process) -> None:
        assert httpx.get(orphan.url + "/healthz", timeout=WAIT_S).status_code == 200
        ready = httpx.get(orphan.url + "/readyz", timeout=WAIT_S)
        assert ready.status_code == 503
        assert "unreachable" in ready.json()["reason"]


def test_requests_beyond_max_concurrency_are_429(engine: Process, logs: Path) -> None:
    narrow = start_forwarder(engine.url, logs, "--max-concurrency", "1")
    try:
        control(engine, "/fake/hold", {"on": True})
        body = launch_body()
        with httpx.stream("POST", narrow.url + "/stream", json=body, timeout=WAIT_S) as held:
            chunks = data_events(held.iter_lines())  # keep it: dropping it closes the stream
            next(chunks)  # in flight, held by the engine
            rejected = httpx.post(narrow.url + "/predict", json=launch_body(), timeout=WAIT_S)
            assert rejected.status_code == 429
            assert rejected.json()["error"]["type"] == "overloaded"
            control(engine, "/fake/release")
            assert len(list(chunks)) == 3
        assert httpx.post(narrow.url + "/predict", json=launch_body(), timeout=WAIT_S).is_success
    finally:
        narrow.stop()


def test_the_forwarder_recovers_when_the_engine_restarts(logs: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.engine", "--port", str(port)]
    first = Process(argv, port, logs / "engine-first.log")
    forwarder = start_forwarder(first.url, logs)
    try:
        assert httpx.post(forwarder.url + "/predict", json=launch_body(), timeout=WAIT_S).is_success
        first.stop()  # the forwarder's pooled connection to it is now dead
        down = httpx.post(forwarder.url + "/predict", json=launch_body(), timeout=WAIT_S)
        assert down.status_code == 502
        second = Process(argv, port, logs / "engine-second.log")
        try:
            response = httpx.post(forwarder.url + "/predict", json=launch_body(), timeout=WAIT_S)
            assert response.is_success
        finally:
            second.stop()
    finally:
        forwarder.stop()
        first.stop()
