"""The official `openai` client against the simulator's OpenAI routes, streamed and not."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.integration.simulator.conftest import Launch

MODEL = "llama-3-8b-instruct"


@pytest.fixture(scope="module")
def client(launch_for_module: Launch) -> Iterator[openai.OpenAI]:
    sim = launch_for_module(
        "--model-path", "/models/llama", "--served-model-name", MODEL, "--sim-ttft-ms", "5",
        "--sim-tpot-ms", "5",
    ).wait_serving()  # fmt: skip
    with openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_chat_completions(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=5, seed=1
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    again = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=5, seed=1
    )
    assert again.choices[0].message.content == answer.choices[0].message.content


def test_chat_completions_streamed_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=5,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=5, seed=1
    )
    assert content == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices]) == 5
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_completions(client: openai.OpenAI) -> None:
    answer = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4)
    assert answer.choices[0].text
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 4)


def test_completions_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, stream=True)
    )
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4)
    assert len(chunks) == 4
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_stop_string_ends_with_finish_reason_stop(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="stop", max_tokens=30)
    stop = whole.choices[0].text.split()[3]
    cut = client.completions.create(model=MODEL, prompt="stop", max_tokens=30, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].text


def test_an_unknown_model_is_a_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=1)
