"""The HTTP shapes, in process: SGLang native and OpenAI bodies, errors, and SSE events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import httpx
import pytest

from llm_launch.simulator.app import build_app, build_worker_app
from llm_launch.simulator.args import parse_args
from llm_launch.simulator.prompts import ChatTurn, render_chat
from llm_launch.simulator.tokens import count_tokens, generate
from tests.unit.simulator.fakes import FakeGroup, GroupThatBreaks

MODEL = "deepseek-r1"


@pytest.fixture
def group() -> FakeGroup:
    return FakeGroup()


@pytest.fixture
async def client(group: FakeGroup) -> AsyncIterator[httpx.AsyncClient]:
    argv = ["--model-path", "/models/x", "--served-model-name", MODEL, "--sim-ttft-ms", "0"]
    app = build_app(parse_args([*argv, "--sim-tpot-ms", "0", "--context-length", "64"]), group)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


def events(body: str) -> list[Any]:
    """The data of each SSE event; `[DONE]` stays a string."""
    datas = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    return [d if d == "[DONE]" else json.loads(d) for d in datas]


async def test_generate_answers_sglangs_native_shape(client: httpx.AsyncClient) -> None:
    body = {"text": "Hello there", "sampling_params": {"max_new_tokens": 5, "seed": 3}}
    answer = (await client.post("/generate", json=body)).json()
    assert answer["text"] == generate("Hello there", max_tokens=5, seed=3).text
    meta = answer["meta_info"]
    assert (meta["prompt_tokens"], meta["completion_tokens"]) == (2, 5)
    assert meta["finish_reason"] == {"type": "length", "length": 5}
    assert meta["e2e_latency"] >= 0 and meta["id"]


async def test_generate_with_a_stop_string_reports_what_matched(client: httpx.AsyncClient) -> None:
    full = generate("stop test", max_tokens=30, seed=0).text
    stop = full.split()[2]
    body = {"text": "stop test", "sampling_params": {"max_new_tokens": 30, "stop": [stop]}}
    answer = (await client.post("/generate", json=body)).json()
    assert answer["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert answer["text"] == full[: full.index(stop)]


async def test_generate_streams_cumulative_text_then_done(client: httpx.AsyncClient) -> None:
    body = {"text": "stream me", "stream": True, "sampling_params": {"max_new_tokens": 4}}
    response = await client.post("/generate", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    assert got[-1] == "[DONE]"
    texts = [event["text"] for event in got[:-1]]
    assert len(texts) == 4
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts))
    assert texts[-1] == generate("stream me", max_tokens=4, seed=0).text
    assert [e["meta_info"]["completion_tokens"] for e in got[:-1]] == [1, 2, 3, 4]
    assert got[-2]["meta_info"]["finish_reason"]["type"] == "length"


async def test_chat_counts_the_rendered_template_and_answers_openais_shape(
    client: httpx.AsyncClient,
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    body = {"model": MODEL, "messages": messages, "max_tokens": 3}
    answer = (await client.post("/v1/chat/completions", json=body)).json()
    prompt = render_chat([ChatTurn("system", "Be brief."), ChatTurn("user", "Hi")])
    assert answer["object"] == "chat.completion"
    assert answer["model"] == MODEL
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": generate(prompt, max_tokens=3, seed=0).text,
    }
    assert answer["choices"][0]["finish_reason"] == "length"
    prompt_tokens = count_tokens(prompt)
    assert answer["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 3,
        "total_tokens": prompt_tokens + 3,
    }


async def test_chat_streams_a_role_then_content_deltas_then_usage(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    got = events((await client.post("/v1/chat/completions", json=body)).text)
    assert got[-1] == "[DONE]"
    chunks, usage_chunk = got[:-2], got[-2]
    assert len(chunks) == 4
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4


async def test_completions_stream_without_usage_unless_asked(client: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "prompt": "Once", "max_tokens": 3, "stream": True}
    got = events((await client.post("/v1/completions", json=body)).text)
    assert len(got) == 4 and got[-1] == "[DONE]"
    assert (
        "".join(c["choices"][0]["text"] for c in got[:-1])
        == generate("Once", max_tokens=3, seed=0).text
    )


async def test_completions_honour_seed_and_stop(client: httpx.AsyncClient) -> None:
    full = generate("Once", max_tokens=20, seed=42).text
    stop = full.split()[1]
    body = {"prompt": ["Once"], "max_tokens": 20, "seed": 42, "stop": stop}
    answer = (await client.post("/v1/completions", json=body)).json()
    choice = answer["choices"][0]
    assert (choice["text"], choice["finish_reason"]) == (full[: full.index(stop)], "stop")
    assert answer["usage"]["prompt_tokens"] == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "`gpt-4` does not exist"),
        ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user"}]}, 404, "`x`"),
        ("/v1/completions", {"prompt": "x", "n": 2}, 400, "one choice"),
        ("/v1/completions", {"prompt": ["a", "b"]}, 400, "one prompt per request"),
        ("/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ("/v1/completions", {"max_tokens": 1}, 400, "prompt"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 64}, 400, "context length"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "text only",
        ),
        ("/generate", {"sampling_params": {}}, 400, "text"),
        ("/generate", {"text": "x", "sampling_params": {"max_new_tokens": -2}}, 400, "max_new"),
    ],
)
async def test_bad_requests_get_an_openai_style_error(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, words: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == status
    error = response.json()
    assert error["object"] == "error" and error["code"] == status
    assert words in error["message"]


async def test_generation_routes_answer_503_while_the_group_has_a_problem(
    client: httpx.AsyncClient, group: FakeGroup
) -> None:
    group.current_problem = "group not formed: waiting for rank 1 to join"
    for path, body in [
        ("/generate", {"text": "x"}),
        ("/generate", {"text": "x", "stream": True}),
        ("/v1/completions", {"prompt": "x"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    ]:
        response = await client.post(path, json=body)
        assert response.status_code == 503, path
        assert "waiting for rank 1" in response.json()["message"]
    check = await client.get("/health_generate")
    assert check.status_code == 503
    assert check.json()["reason"] == "group not formed: waiting for rank 1 to join"
    assert (await client.get("/health")).status_code == 200


async def test_health_generate_passes_when_the_group_is_whole(client: httpx.AsyncClient) -> None:
    check = await client.get("/health_generate")
    assert check.status_code == 200
    assert check.json()["simulated"] is True


async def test_models_info_and_metrics_say_simulated(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert models["data"][0]["owned_by"] == "llm-launch-simulator"
    assert models["data"][0]["max_model_len"] == 64
    info = (await client.get("/get_server_info")).json()
    assert info["simulated"] is True
    assert info["served_model_name"] == MODEL
    assert info["group"] == {"problem": None}
    await client.post("/generate", json={"text": "a b c", "sampling_params": {"max_new_tokens": 2}})
    metrics = (await client.get("/metrics")).text
    assert f'sglang:prompt_tokens_total{{model_name="{MODEL}"}} 3.0' in metrics
    assert f'sglang:generation_tokens_total{{model_name="{MODEL}"}} 2.0' in metrics
    assert "sglang:num_running_reqs" in metrics
    assert f'llm_launch_simulator_info{{model_name="{MODEL}"}} 1.0' in metrics


async def test_a_worker_serves_only_a_dummy_health() -> None:
    transport = httpx.ASGITransport(app=build_worker_app(rank=1))
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.post("/generate", json={"text": "x"})).status_code == 404
        assert (await c.get("/health_generate")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"text": "x", "stream": True, "sampling_params": {"max_new_tokens": 8}}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": 8, "stream": True},
        ),
    ],
)
async def test_a_stream_cut_by_a_lost_rank_ends_with_an_error_event(
    path: str, body: dict[str, Any]
) -> None:
    # Admission and the first two tokens see a whole group; the third sees rank 1 lost.
    group = GroupThatBreaks(healthy_checks=3, problem="rank 1 lost: connection closed")
    app = build_app(parse_args(["--model-path", "m", "--sim-ttft-ms", "0"]), group)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        got = events((await c.post(path, json=body)).text)
    assert got[-1] == "[DONE]"
    assert len(got) == 4  # two tokens, the error, [DONE]
    assert got[-2]["error"]["code"] == 503
    assert got[-2]["error"]["message"] == "rank 1 lost: connection closed"
