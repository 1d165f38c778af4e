"""Launch completion requests: validation, and the mapping to and from each engine's API."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from llm_launch.runtime.launch_api import (
    CompletionRequest,
    EngineBodyError,
    InvalidRequest,
    launch_output_from_openai,
    launch_output_from_sglang,
    openai_completion_body,
    parse_completion_request,
    sglang_generate_body,
)


def launch_body(**overrides: Any) -> dict[str, Any]:
    """A valid Launch completion request; keyword arguments replace or add fields."""
    body: dict[str, Any] = {"prompt": "Hello", "max_new_tokens": 8, "temperature": 0.5}
    body.update(overrides)
    return body


def parse(**overrides: Any) -> CompletionRequest:
    return parse_completion_request(json.dumps(launch_body(**overrides)).encode())


def rejected_fields(body: Any) -> list[str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidRequest) as caught:
        parse_completion_request(raw)
    return [error.field for error in caught.value.errors]


class TestValidation:
    def test_a_minimal_request_is_accepted_with_defaults(self) -> None:
        request = parse()
        assert request == CompletionRequest(prompt="Hello", max_new_tokens=8, temperature=0.5)
        assert request.return_token_log_probs is False

    def test_null_optional_fields_mean_absent_and_unknown_fields_are_ignored(self) -> None:
        request = parse(stop_sequences=None, top_p=None, something_new=1)
        assert request.stop_sequences is None and request.top_p is None

    def test_an_integer_temperature_becomes_a_float(self) -> None:
        assert parse(temperature=1).temperature == 1.0

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("prompt", 42),
            ("max_new_tokens", 0),
            ("max_new_tokens", 1.5),
            ("max_new_tokens", True),
            ("temperature", 1.5),
            ("temperature", -0.1),
            ("temperature", "hot"),
            ("stop_sequences", "END"),
            ("stop_sequences", ["END", 3]),
            ("return_token_log_probs", "yes"),
            ("presence_penalty", 2.5),
            ("frequency_penalty", -1),
            ("top_k", -2),
            ("top_p", 0),
            ("top_p", 1.1),
            ("guided_json", "not a schema"),
            ("guided_choice", "a"),
            ("skip_special_tokens", 1),
        ],
    )
    def test_a_bad_value_is_rejected_naming_its_field(self, field: str, value: Any) -> None:
        assert rejected_fields(launch_body(**{field: value})) == [field]

    def test_missing_required_fields_are_all_reported_at_once(self) -> None:
        assert rejected_fields({}) == ["prompt", "max_new_tokens", "temperature"]

    def test_every_bad_field_is_reported_with_its_reason(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            parse(temperature=3, top_k=-5)
        assert "temperature: must be a number in [0.0, 1.0]" in str(caught.value)
        assert "top_k: must be an integer >= -1" in str(caught.value)

    def test_only_one_guided_decoding_field_may_be_set(self) -> None:
        assert rejected_fields(launch_body(guided_regex="a+", guided_choice=["a"])) == [
            "guided_choice"
        ]

    @pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
    def test_a_body_that_is_not_a_json_object_is_rejected(self, raw: bytes) -> None:
        assert rejected_fields(raw) == ["body"]


class TestSglangRequest:
    def test_the_basics_become_sampling_params(self) -> None:
        body = sglang_generate_body(parse(), stream=False)
        assert body == {
            "text": "Hello",
            "sampling_params": {"max_new_tokens": 8, "temperature": 0.5},
            "stream": False,
        }

    def test_every_optional_field_maps_to_its_sglang_name(self) -> None:
        request = parse(
            stop_sequences=["\n"],
            presence_penalty=0.1,
            frequency_penalty=0.2,
            top_k=5,
            top_p=0.9,
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            guided_grammar="root ::= 'a'",
        )
        assert sglang_generate_body(request, stream=True)["sampling_params"] == {
            "max_new_tokens": 8,
            "temperature": 0.5,
            "stop": ["\n"],
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "top_k": 5,
            "top_p": 0.9,
            "no_stop_trim": True,
            "skip_special_tokens": False,
            "ebnf": "root ::= 'a'",
        }

    def test_a_json_schema_is_sent_as_a_string(self) -> None:
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        params = sglang_generate_body(parse(guided_json=schema), stream=False)["sampling_params"]
        assert json.loads(params["json_schema"]) == schema

    def test_choices_become_a_regex_matching_exactly_one_of_them(self) -> None:
        params = sglang_generate_body(parse(guided_choice=["a.b", "c|d"]), stream=False)[
            "sampling_params"
        ]
        pattern = re.compile(params["regex"])
        assert pattern.fullmatch("a.b") and pattern.fullmatch("c|d")
        assert not pattern.fullmatch("axb") and not pattern.fullmatch("c")

    def test_token_log_probs_ask_for_logprobs_with_their_text(self) -> None:
        body = sglang_generate_body(parse(return_token_log_probs=True), stream=False)
        assert body["return_logprob"] is True and body["return_text_in_logprobs"] is True


class TestOpenAIRequest:
    def test_the_basics_become_a_completion_for_the_served_model(self) -> None:
        body = openai_completion_body(parse(), model="llama", stream=False)
        assert body == {
            "model": "llama",
            "prompt": "Hello",
            "max_tokens": 8,
            "temperature": 0.5,
            "stream": False,
        }

    def test_without_a_served_model_name_the_model_is_left_to_the_engine(self) -> None:
        assert "model" not in openai_completion_body(parse(), model=None, stream=False)

    def test_guided_decoding_uses_structured_outputs(self) -> None:
        body = openai_completion_body(parse(guided_choice=["yes", "no"]), model=None, stream=False)
        assert body["structured_outputs"] == {"choice": ["yes", "no"]}
        assert not any(key.startswith("guided_") for key in body)

    def test_vllm_extras_and_logprobs_are_passed(self) -> None:
        request = parse(top_k=3, include_stop_str_in_output=True, return_token_log_probs=True)
        body = openai_completion_body(request, model=None, stream=False)
        assert body["top_k"] == 3 and body["include_stop_str_in_output"] is True
        assert body["logprobs"] == 1

    def test_a_stream_asks_for_usage_on_every_chunk(self) -> None:
        body = openai_completion_body(parse(), model=None, stream=True)
        assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def sglang_answer(**meta: Any) -> dict[str, Any]:
    return {
        "text": "Hi there",
        "meta_info": {"prompt_tokens": 4, "completion_tokens": 2, "finish_reason": None, **meta},
    }


class TestEngineAnswers:
    def test_an_sglang_answer_becomes_a_launch_output(self) -> None:
        assert launch_output_from_sglang(sglang_answer(), with_tokens=False) == {
            "text": "Hi there",
            "num_prompt_tokens": 4,
            "num_completion_tokens": 2,
            "tokens": None,
        }

    def test_sglang_logprob_triples_become_tokens(self) -> None:
        answer = sglang_answer(output_token_logprobs=[[-0.1, 11, "Hi"], [-0.2, 12, None]])
        tokens = launch_output_from_sglang(answer, with_tokens=True)["tokens"]
        assert tokens == [{"token": "Hi", "log_prob": -0.1}, {"token": "12", "log_prob": -0.2}]

    def test_an_openai_answer_becomes_a_launch_output_with_tokens(self) -> None:
        answer = {
            "choices": [
                {"text": "Hi", "logprobs": {"tokens": ["H", "i"], "token_logprobs": [-1.0, -2.0]}}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
        assert launch_output_from_openai(answer, with_tokens=True) == {
            "text": "Hi",
            "num_prompt_tokens": 3,
            "num_completion_tokens": 2,
            "tokens": [{"token": "H", "log_prob": -1.0}, {"token": "i", "log_prob": -2.0}],
        }

    @pytest.mark.parametrize("answer", [{}, {"text": "x"}, [], {"text": "x", "meta_info": {}}])
    def test_an_sglang_answer_of_the_wrong_shape_is_an_engine_error(self, answer: Any) -> None:
        with pytest.raises(EngineBodyError, match="SGLang"):
            launch_output_from_sglang(answer, with_tokens=False)

    @pytest.mark.parametrize("answer", [{}, {"choices": []}, {"choices": [{"text": "x"}]}])
    def test_an_openai_answer_of_the_wrong_shape_is_an_engine_error(self, answer: Any) -> None:
        with pytest.raises(EngineBodyError, match="OpenAI"):
            launch_output_from_openai(answer, with_tokens=False)
