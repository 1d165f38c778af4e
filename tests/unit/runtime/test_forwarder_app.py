"""The forwarder app in process, over `httpx.MockTransport`: routes, errors, limits, probes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from llm_launch.runtime.forwarder.app import ForwarderApp, ForwarderConfig, create_app

Reply = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]
ENGINE = "http://engine:5005"


class Chunks(httpx.AsyncByteStream):
    """A response body sent in pieces; `fail` raises after them; `closed` tells aclose."""

    def __init__(self, pieces: list[bytes], *, fail: Exception | None = None) -> None:
        self.pieces, self.fail, self.closed = pieces, fail, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


ROUTES = {
    "generate": "/generate",
    "health_generate": "/health_generate",
    "completions": "/v1/completions",
    "chat": "/v1/chat/completions",
    "models": "/v1/models",
}


class Engine:
    """A MockTransport handler: answers by route (named as in ROUTES), and records the
    requests it was sent."""

    def __init__(self, **replies: Reply) -> None:
        self.replies = {ROUTES[name]: reply for name, reply in replies.items()}
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.get(request.url.path)
        if reply is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        answer = reply(request)
        return await answer if isinstance(answer, Awaitable) else answer

    def sent(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def sse(*events: Any) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def sse_reply(pieces: list[bytes], **kwargs: Any) -> Reply:
    headers = {"content-type": "text/event-stream"}
    return lambda request: httpx.Response(200, headers=headers, stream=Chunks(pieces, **kwargs))


def events(body: bytes) -> list[Any]:
    return [json.loads(part.removeprefix(b"data: ")) for part in body.split(b"\n\n") if part]


def sglang_answer(text: str = "Hi there", done: int = 2, *, finish: bool = False) -> dict[str, Any]:
    meta = {"prompt_tokens": 4, "completion_tokens": done}
    return {
        "text": text,
        "meta_info": {**meta, "finish_reason": {"type": "stop"} if finish else None},
    }


def openai_answer(text: str) -> dict[str, Any]:
    return {"choices": [{"text": text}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def launch_body(**overrides: Any) -> dict[str, Any]:
    return {"prompt": "Hello", "max_new_tokens": 8, "temperature": 0.5, **overrides}


@asynccontextmanager
async def forwarder(engine: Engine, **config: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ForwarderConfig(engine_url=ENGINE, **config), httpx.MockTransport(engine))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://forwarder") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


class TestPredict:
    async def test_sglang_gets_generate_and_the_answer_is_launchs_shape(self) -> None:
        engine = Engine(generate=lambda r: httpx.Response(200, json=sglang_answer()))
        async with forwarder(engine) as client:
            response = await client.post("/predict", json=launch_body(stop_sequences=["\n"]))
        assert response.status_code == 200
        body = response.json()
        assert body["output"] == {
            "text": "Hi there",
            "num_prompt_tokens": 4,
            "num_completion_tokens": 2,
            "tokens": None,
        }
        assert body["request_id"] == response.headers["x-request-id"]
        assert engine.requests[0].method == "POST"
        assert engine.sent() == {
            "text": "Hello",
            "sampling_params": {"max_new_tokens": 8, "temperature": 0.5, "stop": ["\n"]},
            "stream": False,
        }

    async def test_openai_engines_get_a_completion_for_the_served_model(self) -> None:
        engine = Engine(completions=lambda r: httpx.Response(200, json=openai_answer("Yo")))
        async with forwarder(engine, engine_api="openai", served_model_name="llama") as client:
            response = await client.post("/predict", json=launch_body())
        assert response.json()["output"]["text"] == "Yo"
        assert engine.sent()["model"] == "llama" and engine.sent()["max_tokens"] == 8

    async def test_the_callers_request_id_is_kept(self) -> None:
        engine = Engine(generate=lambda r: httpx.Response(200, json=sglang_answer()))
        async with forwarder(engine) as client:
            response = await client.post(
                "/predict", json=launch_body(), headers={"x-request-id": "trace-7"}
            )
        assert response.json()["request_id"] == "trace-7"

    async def test_an_invalid_request_is_422_naming_the_field_and_never_reaches_the_engine(
        self,
    ) -> None:
        engine = Engine()
        async with forwarder(engine) as client:
            response = await client.post("/predict", json=launch_body(temperature=7))
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["fields"] == [
            {"field": "temperature", "message": "must be a number in [0.0, 1.0]"}
        ]
        assert "temperature" in error["message"]
        assert engine.requests == []

    async def test_an_engine_refusal_keeps_its_status_and_says_what_the_engine_said(self) -> None:
        engine = Engine(generate=lambda r: httpx.Response(400, json={"detail": "prompt too long"}))
        async with forwarder(engine) as client:
            response = await client.post("/predict", json=launch_body())
        assert response.status_code == 400
        assert response.json()["error"]["engine_body"] == {"detail": "prompt too long"}

    @pytest.mark.parametrize("content", [b"<html>oops</html>", b'{"text": 1}'])
    async def test_an_engine_answer_of_the_wrong_shape_is_502(self, content: bytes) -> None:
        engine = Engine(generate=lambda r: httpx.Response(200, content=content))
        async with forwarder(engine) as client:
            response = await client.post("/predict", json=launch_body())
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "engine_error"


class TestStream:
    async def test_sglang_cumulative_events_become_launch_deltas(self) -> None:
        last = sse(sglang_answer("Hi there", 3, finish=True))
        pieces = [
            sse(sglang_answer("Hi", 1)),
            sse(sglang_answer("Hi the", 2)) + last[:9],  # an event split across pieces
            last[9:] + sse(b"[DONE]"),
        ]
        engine = Engine(generate=sse_reply(pieces))
        async with forwarder(engine) as client:
            response = await client.post("/stream", json=launch_body())
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = events(response.content)
        assert [c["output"]["text"] for c in chunks] == ["Hi", " the", "re"]
        assert [c["output"]["finished"] for c in chunks] == [False, False, True]
        assert {c["request_id"] for c in chunks} == {response.headers["x-request-id"]}
        assert engine.sent()["stream"] is True

    async def test_openai_engines_stream_their_deltas(self) -> None:
        usage = {"prompt_tokens": 2, "completion_tokens": 1}
        pieces = [
            sse({"choices": [{"text": "Yo", "finish_reason": None}], "usage": usage}),
            sse({"choices": [{"text": "!", "finish_reason": "stop"}], "usage": usage}),
            sse({"choices": [], "usage": usage}, b"[DONE]"),
        ]
        engine = Engine(completions=sse_reply(pieces))
        async with forwarder(engine, engine_api="openai") as client:
            response = await client.post("/stream", json=launch_body())
        assert [c["output"]["text"] for c in events(response.content)] == ["Yo", "!"]

    async def test_an_engine_reporting_usage_at_the_end_gives_one_counted_finish(self) -> None:
        pieces = [
            sse({"choices": [{"text": "Yo", "finish_reason": None}], "usage": None}),
            sse({"choices": [{"text": "!", "finish_reason": "stop"}], "usage": None}),
            sse({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}}),
            sse(b"[DONE]"),
        ]
        engine = Engine(completions=sse_reply(pieces))
        async with forwarder(engine, engine_api="openai") as client:
            response = await client.post("/stream", json=launch_body())
        outputs = [c["output"] for c in events(response.content)]
        assert [(o["text"], o["finished"]) for o in outputs] == [("Yo", False), ("!", True)]
        assert outputs[-1]["num_completion_tokens"] == 2

    async def test_an_engine_failure_mid_stream_ends_it_with_a_launch_stream_error(self) -> None:
        engine = Engine(
            generate=sse_reply([sse(sglang_answer("Hi", 1))], fail=httpx.ReadError("reset"))
        )
        async with forwarder(engine) as client:
            response = await client.post("/stream", json=launch_body())
        first, last = events(response.content)
        assert first["output"]["text"] == "Hi"
        assert last["output"] is None and last["error"]["status_code"] == 502
        assert "reset" in last["error"]["content"]["error"]

    async def test_an_engine_error_event_ends_the_stream_with_its_status(self) -> None:
        error = {"error": {"message": "KV cache full", "code": 503}}
        engine = Engine(generate=sse_reply([sse(error)]))
        async with forwarder(engine) as client:
            response = await client.post("/stream", json=launch_body())
        (only,) = events(response.content)
        assert only["error"]["status_code"] == 503

    async def test_an_engine_refusal_before_streaming_is_a_plain_json_error(self) -> None:
        engine = Engine(generate=lambda r: httpx.Response(503, json={"detail": "busy"}))
        async with forwarder(engine) as client:
            response = await client.post("/stream", json=launch_body())
        assert response.status_code == 503
        assert response.json()["error"]["engine_body"] == {"detail": "busy"}

    async def test_an_invalid_stream_request_is_422(self) -> None:
        async with forwarder(Engine()) as client:
            response = await client.post("/stream", json={"prompt": "x"})
        assert response.status_code == 422
        fields = [f["field"] for f in response.json()["error"]["fields"]]
        assert fields == ["max_new_tokens", "temperature"]


class TestPassThrough:
    async def test_a_chat_completion_reaches_the_engine_unchanged(self) -> None:
        engine = Engine(chat=lambda r: httpx.Response(200, json={"id": "c1"}))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with forwarder(engine) as client:
            headers = {"authorization": "Bearer k", "openai-organization": "org"}
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200 and response.json() == {"id": "c1"}
        sent = engine.requests[0]
        assert json.loads(sent.content) == body
        assert sent.headers["openai-organization"] == "org"
        # Authorization is the forwarder's own credential: the engine never gets it.
        assert "authorization" not in sent.headers
        assert sent.headers["host"] == "engine:5005"

    async def test_engine_status_and_content_type_are_preserved(self) -> None:
        engine = Engine(
            completions=lambda r: httpx.Response(
                400, content=b"bad prompt", headers={"content-type": "text/plain"}
            )
        )
        async with forwarder(engine) as client:
            response = await client.post("/v1/completions", json={"prompt": "x"})
        assert response.status_code == 400
        assert response.headers["content-type"] == "text/plain"
        assert response.content == b"bad prompt"

    async def test_a_streamed_answer_passes_byte_for_byte(self) -> None:
        pieces = [sse({"choices": [{"delta": {"content": "a"}}]}), b"data: [DO", b"NE]\n\n"]
        engine = Engine(chat=sse_reply(pieces))
        async with forwarder(engine) as client:
            response = await client.post("/v1/chat/completions", json={"stream": True})
        assert response.headers["content-type"] == "text/event-stream"
        assert response.content == b"".join(pieces)

    async def test_an_engine_failure_mid_stream_becomes_an_sse_error_event(self) -> None:
        engine = Engine(chat=sse_reply([b"data: {}\n\n"], fail=httpx.ReadError("x")))
        async with forwarder(engine) as client:
            response = await client.post("/v1/chat/completions", json={"stream": True})
        first, error = response.content.split(b"\n\n")[:2]
        assert first == b"data: {}"
        assert json.loads(error.removeprefix(b"data: "))["error"]["code"] == 502

    async def test_models_are_listed_by_the_engine_with_the_query_kept(self) -> None:
        engine = Engine(models=lambda r: httpx.Response(200, json={"data": [{"id": "m"}]}))
        async with forwarder(engine) as client:
            response = await client.get("/v1/models?limit=5")
        assert response.json() == {"data": [{"id": "m"}]}
        assert engine.requests[0].url.query == b"limit=5"


class TestEngineFailures:
    @pytest.mark.parametrize(
        "error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.ReadError("x")]
    )
    @pytest.mark.parametrize(
        ("path", "body"),
        [("/predict", launch_body()), ("/stream", launch_body()), ("/v1/chat/completions", {})],
    )
    async def test_an_unreachable_engine_is_502_with_a_json_error(
        self, error: Exception, path: str, body: Any
    ) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise error

        engine = Engine(generate=fail, chat=fail)
        async with forwarder(engine) as client:
            response = await client.post(path, json=body)
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "engine_unavailable"
        assert type(error).__name__ in response.json()["error"]["message"]


class TestConcurrencyLimit:
    async def test_requests_beyond_the_limit_are_429_at_once_and_the_rest_complete(self) -> None:
        release, arrived = asyncio.Event(), asyncio.Semaphore(0)

        async def slow(request: httpx.Request) -> httpx.Response:
            arrived.release()
            await release.wait()
            return httpx.Response(200, json=sglang_answer())

        async with forwarder(Engine(generate=slow), max_concurrency=2) as client:
            app: ForwarderApp = client.app  # type: ignore[attr-defined]
            held = [asyncio.create_task(client.post("/predict", json=launch_body())) for _ in "ab"]
            for _ in held:
                await arrived.acquire()
            rejected = await client.post("/v1/chat/completions", json={})
            assert rejected.status_code == 429
            assert rejected.json()["error"]["type"] == "overloaded"
            assert app.in_flight == 2
            release.set()
            assert [(await task).status_code for task in held] == [200, 200]
            assert app.in_flight == 0

    async def test_metrics_export_the_in_flight_gauge_the_autoscaler_targets(self) -> None:
        release, arrived = asyncio.Event(), asyncio.Semaphore(0)

        async def slow(request: httpx.Request) -> httpx.Response:
            arrived.release()
            await release.wait()
            return httpx.Response(200, json=sglang_answer())

        async with forwarder(Engine(generate=slow), max_concurrency=1) as client:
            held = asyncio.create_task(client.post("/predict", json=launch_body()))
            await arrived.acquire()
            assert (await client.post("/predict", json=launch_body())).status_code == 429
            metrics = (await client.get("/metrics")).text
            assert "llm_launch_requests_in_flight 1\n" in metrics
            assert "llm_launch_requests_rejected_total 1\n" in metrics
            release.set()
            await held
            metrics = (await client.get("/metrics")).text
            assert "llm_launch_requests_in_flight 0\n" in metrics
            assert "llm_launch_requests_total 1\n" in metrics

    async def test_probes_are_never_limited(self) -> None:
        release, arrived = asyncio.Event(), asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            arrived.set()
            await release.wait()
            return httpx.Response(200, json=sglang_answer())

        engine = Engine(generate=slow, health_generate=lambda r: httpx.Response(200))
        async with forwarder(engine, max_concurrency=1, ready_check_path="/health_generate") as c:
            held = asyncio.create_task(c.post("/predict", json=launch_body()))
            await arrived.wait()
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
            release.set()
            await held


class TestClientLeaving:
    async def test_a_client_that_leaves_mid_stream_closes_the_engine_stream(self) -> None:
        gone, first_sent = asyncio.Event(), asyncio.Event()

        class Endless(Chunks):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield sse(sglang_answer("Hi", 1))
                await asyncio.Event().wait()  # the engine is still generating
                yield b""  # pragma: no cover

        stream = Endless([])
        headers = {"content-type": "text/event-stream"}
        engine = Engine(generate=lambda r: httpx.Response(200, headers=headers, stream=stream))
        app = create_app(ForwarderConfig(engine_url=ENGINE), httpx.MockTransport(engine))
        messages = [{"type": "http.request", "body": json.dumps(launch_body()).encode()}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            if message.get("body"):
                first_sent.set()

        scope = {"type": "http", "method": "POST", "path": "/stream", "headers": []}
        call = asyncio.create_task(app(scope, receive, send))
        await first_sent.wait()
        gone.set()
        await asyncio.wait_for(call, timeout=5)
        assert stream.closed
        assert app.in_flight == 0


class TestProbes:
    async def test_healthz_answers_even_without_an_engine(self) -> None:
        async with forwarder(Engine()) as client:
            response = await client.get("/healthz")
        assert response.status_code == 200

    async def test_readyz_passes_when_the_generation_check_passes(self) -> None:
        engine = Engine(health_generate=lambda r: httpx.Response(200))
        async with forwarder(engine, ready_check_path="/health_generate") as client:
            response = await client.get("/readyz")
        assert response.status_code == 200 and response.json()["ready"] is True
        assert engine.requests[0].method == "GET"

    async def test_readyz_is_503_with_the_engines_status_when_the_check_fails(self) -> None:
        engine = Engine(
            health_generate=lambda r: httpx.Response(503, json={"detail": "group lost a rank"})
        )
        async with forwarder(engine, ready_check_path="/health_generate") as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["engine_status"] == 503
        assert "group lost a rank" in response.json()["reason"]

    async def test_readyz_is_503_saying_the_engine_is_unreachable(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused")

        engine = Engine(health_generate=refuse)
        async with forwarder(engine, ready_check_path="/health_generate") as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert "unreachable" in response.json()["reason"]

    async def test_readyz_is_503_when_the_check_times_out(self) -> None:
        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")  # pragma: no cover

        engine = Engine(health_generate=hang)
        config = {"ready_check_path": "/health_generate", "ready_timeout_s": 0.05}
        async with forwarder(engine, **config) as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert "timed out" in response.json()["reason"]

    async def test_without_a_check_route_readiness_generates_one_token(self) -> None:
        engine = Engine(completions=lambda r: httpx.Response(200, json=openai_answer(".")))
        async with forwarder(engine, engine_api="openai", served_model_name="llama") as client:
            response = await client.get("/readyz")
        assert response.status_code == 200
        sent = engine.sent()
        assert sent["max_tokens"] == 1 and sent["model"] == "llama"

    async def test_a_readiness_result_is_reused_within_the_cache_time(self) -> None:
        engine = Engine(health_generate=lambda r: httpx.Response(200))
        config = {"ready_check_path": "/health_generate", "ready_cache_s": 60}
        async with forwarder(engine, **config) as client:
            for _ in range(3):
                assert (await client.get("/readyz")).status_code == 200
        assert len(engine.requests) == 1


class TestRouting:
    async def test_an_unknown_route_is_404(self) -> None:
        async with forwarder(Engine()) as client:
            response = await client.get("/nope")
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"

    async def test_a_wrong_method_is_405(self) -> None:
        async with forwarder(Engine()) as client:
            response = await client.get("/predict")
        assert response.status_code == 405
