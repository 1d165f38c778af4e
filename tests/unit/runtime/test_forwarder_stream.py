"""Streams: SSE decoding in arbitrary pieces, and engine events mapped to Launch chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_launch.runtime.forwarder.stream import (
    EngineStreamError,
    OpenAIStream,
    SglangStream,
    SseDecoder,
    encode_event,
    stream_error_chunk,
)
from llm_launch.runtime.launch_api import EngineBodyError

SSE = b'data: {"a": 1}\n\n: a comment\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'


def data(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


class TestSseDecoder:
    def test_whole_events_are_split_into_their_data(self) -> None:
        assert SseDecoder().feed(SSE) == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]

    def test_events_fed_one_byte_at_a_time_come_out_the_same(self) -> None:
        decoder = SseDecoder()
        out = [payload for i in range(len(SSE)) for payload in decoder.feed(SSE[i : i + 1])]
        assert out == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]

    def test_an_incomplete_event_waits_for_its_end(self) -> None:
        decoder = SseDecoder()
        assert decoder.feed(b'data: {"a"') == []
        assert decoder.feed(b": 1}\n\n") == [b'{"a": 1}']

    def test_crlf_line_ends_and_multi_line_data_are_understood(self) -> None:
        decoder = SseDecoder()
        assert decoder.feed(b"data: one\r\n") == []
        assert decoder.feed(b"data:two\r\n\r\n") == [b"one\ntwo"]

    def test_an_event_round_trips_through_encode_event(self) -> None:
        chunk = {"request_id": "r", "output": {"text": "é\n"}}
        assert [json.loads(p) for p in SseDecoder().feed(encode_event(chunk))] == [chunk]


def sglang_event(text: str, done: int, *, finish: bool = False, logprobs: bool = False) -> bytes:
    meta: dict[str, Any] = {
        "prompt_tokens": 5,
        "completion_tokens": done,
        "finish_reason": {"type": "stop"} if finish else None,
    }
    if logprobs:
        words = text.split()
        meta["output_token_logprobs"] = [[-0.5, i, w + " "] for i, w in enumerate(words)]
    return data({"text": text, "meta_info": meta})


class TestSglangStream:
    def test_cumulative_text_becomes_deltas(self) -> None:
        stream = SglangStream(with_tokens=False)
        outputs = [
            stream.output(sglang_event("Hel", 1)),
            stream.output(sglang_event("Hello wo", 2)),
            stream.output(sglang_event("Hello world", 3, finish=True)),
        ]
        assert [o["text"] for o in outputs] == ["Hel", "lo wo", "rld"]
        assert [o["finished"] for o in outputs] == [False, False, True]
        assert outputs[-1] == {
            "text": "rld",
            "finished": True,
            "num_prompt_tokens": 5,
            "num_completion_tokens": 3,
            "token": None,
        }

    def test_a_text_that_does_not_extend_the_previous_one_is_passed_whole(self) -> None:
        stream = SglangStream(with_tokens=False)
        stream.output(sglang_event("abc", 1))
        assert stream.output(sglang_event("xyz", 2))["text"] == "xyz"

    def test_each_chunk_carries_its_new_token(self) -> None:
        stream = SglangStream(with_tokens=True)
        first = stream.output(sglang_event("a ", 1, logprobs=True))
        assert first["token"] == {"token": "a ", "log_prob": -0.5}

    def test_several_new_tokens_in_one_chunk_become_one_with_their_joint_log_prob(self) -> None:
        stream = SglangStream(with_tokens=True)
        stream.output(sglang_event("a ", 1, logprobs=True))
        token = stream.output(sglang_event("a b c ", 3, logprobs=True))["token"]
        assert token == {"token": "b c ", "log_prob": -1.0}

    def test_an_error_event_raises_with_its_status(self) -> None:
        error = data({"error": {"message": "out of memory", "code": 503}})
        with pytest.raises(EngineStreamError, match="out of memory") as caught:
            SglangStream(with_tokens=False).output(error)
        assert caught.value.status_code == 503

    @pytest.mark.parametrize("payload", [b"not json", b"[1]", data({"text": "a"})])
    def test_a_malformed_event_is_an_engine_error(self, payload: bytes) -> None:
        with pytest.raises(EngineBodyError):
            SglangStream(with_tokens=False).output(payload)


def openai_event(
    text: str | None, done: int | None, *, finish: str | None = None, logprobs: Any = None
) -> bytes:
    event: dict[str, Any] = {"choices": [], "usage": None}
    if text is not None:
        event["choices"] = [{"text": text, "finish_reason": finish, "logprobs": logprobs}]
    if done is not None:
        event["usage"] = {"prompt_tokens": 5, "completion_tokens": done}
    return data(event)


class TestOpenAIStream:
    def test_deltas_pass_with_the_counts_of_each_chunk(self) -> None:
        stream = OpenAIStream(with_tokens=False)
        first = stream.output(openai_event("Hel", 1))
        last = stream.output(openai_event("lo", 2, finish="stop"))
        assert first == {
            "text": "Hel",
            "finished": False,
            "num_prompt_tokens": 5,
            "num_completion_tokens": 1,
            "token": None,
        }
        assert last is not None and last["finished"] and last["num_completion_tokens"] == 2

    def test_the_usage_only_event_adds_nothing_when_the_finish_had_its_counts(self) -> None:
        stream = OpenAIStream(with_tokens=False)
        assert stream.output(openai_event("Hi", 1, finish="stop")) is not None
        assert stream.output(openai_event(None, 1)) is None
        assert stream.flush() is None

    def test_a_finish_without_counts_waits_for_the_usage_only_event(self) -> None:
        stream = OpenAIStream(with_tokens=False)
        assert stream.output(openai_event("Hi", None, finish="length")) is None
        assert stream.output(openai_event(None, 7)) == {
            "text": "Hi",
            "finished": True,
            "num_prompt_tokens": 5,
            "num_completion_tokens": 7,
            "token": None,
        }
        assert stream.flush() is None  # sent once

    def test_a_held_finish_is_released_by_flush_when_no_usage_comes(self) -> None:
        stream = OpenAIStream(with_tokens=False)
        stream.output(openai_event("Hi", None, finish="stop"))
        released = stream.flush()
        assert released is not None and released["text"] == "Hi" and released["finished"]

    def test_a_chunk_token_comes_from_its_logprobs(self) -> None:
        logprobs = {"tokens": ["H"], "token_logprobs": [-0.25]}
        output = OpenAIStream(with_tokens=True).output(openai_event("H", 1, logprobs=logprobs))
        assert output is not None and output["token"] == {"token": "H", "log_prob": -0.25}

    def test_an_error_event_raises(self) -> None:
        with pytest.raises(EngineStreamError, match="boom"):
            OpenAIStream(with_tokens=False).output(data({"error": {"message": "boom"}}))


def test_a_stream_error_chunk_has_launchs_stream_error_shape() -> None:
    assert stream_error_chunk("r1", 502, "engine gone", "2025-01-01T00:00:00+00:00") == {
        "request_id": "r1",
        "output": None,
        "error": {
            "status_code": 502,
            "content": {"error": "engine gone", "timestamp": "2025-01-01T00:00:00+00:00"},
        },
    }
