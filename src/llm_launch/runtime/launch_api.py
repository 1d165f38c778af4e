"""Launch's completion shapes, mapped to and from the engines' own APIs (pure functions).

Called by the forwarder app (`runtime.forwarder.app`) for `POST /predict` and
`POST /stream`; its next hop is the engine, through the bodies built here: SGLang's
native `POST /generate` (`{"text", "sampling_params", ...}`) or an OpenAI-compatible
`POST /v1/completions` (vLLM). No I/O, no clock: each function maps one value to another.

Launch's request (`CompletionSyncV1Request` / `CompletionStreamV1Request`) is validated
here, every error with its field, so a bad request never reaches the engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "CompletionRequest",
    "EngineBodyError",
    "FieldError",
    "InvalidRequest",
    "compact_json",
    "launch_output_from_openai",
    "launch_output_from_sglang",
    "loads",
    "openai_completion_body",
    "parse_completion_request",
    "sglang_generate_body",
    "sync_response",
    "token_output",
]


def compact_json(value: Any) -> bytes:
    """`value` as compact JSON bytes. orjson: every request is decoded and encoded twice
    on the forwarder's hot path, and the standard library costs several times more."""
    return orjson.dumps(value)


def loads(content: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError is one) when malformed."""
    return orjson.loads(content)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidRequest(ValueError):
    """The client's request is not a valid Launch completion request (HTTP 422)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


class EngineBodyError(ValueError):
    """The engine answered 2xx with a body that is not the shape its API promises."""


@dataclass(slots=True)
class CompletionRequest:
    """A validated Launch completion request (sync and stream share the shape).

    Read-only by convention: not `frozen`, whose __init__ costs 6x more on the hot path."""

    prompt: str
    max_new_tokens: int
    temperature: float
    stop_sequences: list[str] | None = None
    return_token_log_probs: bool = False
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    include_stop_str_in_output: bool | None = None
    guided_json: dict[str, Any] | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    skip_special_tokens: bool | None = None


# --- validation -------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns an error message, or None when the value is fine


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be a boolean"


def _string_list(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return None
    return "must be a list of strings"


def _json_object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object (a JSON schema)"


def _int_at_least(low: int) -> Check:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= low else f"must be an integer >= {low}"

    return check


def _number_between(low: float, high: float, *, low_open: bool = False) -> Check:
    bracket = "(" if low_open else "["

    def check(value: Any) -> str | None:
        if _is_number(value) and (value > low if low_open else value >= low) and value <= high:
            return None
        return f"must be a number in {bracket}{low}, {high}]"

    return check


# Field -> check. Bounds follow Launch's CompletionSyncV1Request.
FIELDS: Final[dict[str, Check]] = {
    "prompt": _string,
    "max_new_tokens": _int_at_least(1),
    "temperature": _number_between(0.0, 1.0),
    "stop_sequences": _string_list,
    "return_token_log_probs": _boolean,
    "presence_penalty": _number_between(0.0, 2.0),
    "frequency_penalty": _number_between(0.0, 2.0),
    "top_k": _int_at_least(-1),
    "top_p": _number_between(0.0, 1.0, low_open=True),
    "include_stop_str_in_output": _boolean,
    "guided_json": _json_object,
    "guided_regex": _string,
    "guided_choice": _string_list,
    "guided_grammar": _string,
    "skip_special_tokens": _boolean,
}
REQUIRED: Final = ("prompt", "max_new_tokens", "temperature")
GUIDED: Final = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")


def parse_completion_request(body: bytes) -> CompletionRequest:
    """Validate a Launch completion request; raise InvalidRequest naming every bad field.

    Unknown fields are ignored, as Launch's own request model does; `null` means absent.
    """
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest([FieldError("body", f"is not valid JSON ({exc})")]) from None
    if not isinstance(data, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    values, errors = _checked(data)
    guided = [name for name in GUIDED if name in values]
    if len(guided) > 1:
        errors.append(FieldError(guided[1], f"only one guided_* field may be set ({guided})"))
    if errors:
        raise InvalidRequest(errors)
    values["temperature"] = float(values["temperature"])
    return CompletionRequest(**values)


def _checked(data: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """The known, non-null fields that pass their check, and an error for each other one."""
    errors = [FieldError(name, "is required") for name in REQUIRED if data.get(name) is None]
    values = {}
    for name, value in data.items():  # only what the client sent: usually 3 or 4 fields
        check = FIELDS.get(name)
        if check is None or value is None:
            continue
        message = check(value)
        if message is None:
            values[name] = value
        else:
            errors.append(FieldError(name, message))
    return values, errors


# --- Launch request -> engine request ---------------------------------------------------


def sglang_generate_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    """SGLang's native `POST /generate` body for a Launch request."""
    params: dict[str, Any] = {
        "max_new_tokens": request.max_new_tokens,
        "temperature": request.temperature,
    }
    optional = {
        "stop": request.stop_sequences,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "top_k": request.top_k,
        "top_p": request.top_p,
        "no_stop_trim": request.include_stop_str_in_output,
        "json_schema": None if request.guided_json is None else json.dumps(request.guided_json),
        "regex": request.guided_regex or _choice_regex(request.guided_choice),
        "ebnf": request.guided_grammar,
        "skip_special_tokens": request.skip_special_tokens,
    }
    params.update((key, value) for key, value in optional.items() if value is not None)
    body: dict[str, Any] = {"text": request.prompt, "sampling_params": params, "stream": stream}
    if request.return_token_log_probs:
        body["return_logprob"] = True
        body["return_text_in_logprobs"] = True
    return body


def _choice_regex(choices: list[str] | None) -> str | None:
    """SGLang has no `choice` constraint; an alternation of the literal choices is one."""
    if choices is None:
        return None
    return "(" + "|".join(re.escape(choice) for choice in choices) + ")"


def openai_completion_body(
    request: CompletionRequest, *, model: str | None, stream: bool
) -> dict[str, Any]:
    """An OpenAI-compatible `POST /v1/completions` body (vLLM's extra parameters included).

    Guided decoding uses vLLM's `structured_outputs` (v0.11+; the `guided_*` fields were
    removed in v0.12).
    """
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "max_tokens": request.max_new_tokens,
        "temperature": request.temperature,
        "stream": stream,
    }
    optional = {
        "model": model,
        "stop": request.stop_sequences,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "top_k": request.top_k,
        "top_p": request.top_p,
        "include_stop_str_in_output": request.include_stop_str_in_output,
        "skip_special_tokens": request.skip_special_tokens,
        "logprobs": 1 if request.return_token_log_probs else None,
        "structured_outputs": _structured_outputs(request),
    }
    body.update((key, value) for key, value in optional.items() if value is not None)
    if stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    return body


def _structured_outputs(request: CompletionRequest) -> dict[str, Any] | None:
    chosen = {
        "json": request.guided_json,
        "regex": request.guided_regex,
        "choice": request.guided_choice,
        "grammar": request.guided_grammar,
    }
    chosen = {key: value for key, value in chosen.items() if value is not None}
    return chosen or None


# --- engine response -> Launch response -------------------------------------------------


def sync_response(request_id: str, output: dict[str, Any]) -> dict[str, Any]:
    """Launch's `CompletionSyncV1Response`."""
    return {"request_id": request_id, "output": output}


def token_output(text: str, log_prob: float) -> dict[str, Any]:
    """Launch's `TokenOutput`."""
    return {"token": text, "log_prob": log_prob}


def launch_output_from_sglang(body: Any, *, with_tokens: bool) -> dict[str, Any]:
    """Launch's `CompletionOutput` from SGLang's `/generate` answer."""
    try:
        meta = body["meta_info"]
        output = {
            "text": str(body["text"]),
            "num_prompt_tokens": int(meta["prompt_tokens"]),
            "num_completion_tokens": int(meta["completion_tokens"]),
            "tokens": None,
        }
        if with_tokens:
            output["tokens"] = sglang_tokens(meta.get("output_token_logprobs") or [])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise EngineBodyError(f"unexpected SGLang /generate body: {exc!r}") from None
    return output


def sglang_tokens(logprobs: list[Any]) -> list[dict[str, Any]]:
    """SGLang's `[logprob, token_id, token_text]` triples as Launch tokens."""
    return [
        token_output(str(text if text is not None else token_id), float(log_prob))
        for log_prob, token_id, text, *_ in logprobs
    ]


def launch_output_from_openai(body: Any, *, with_tokens: bool) -> dict[str, Any]:
    """Launch's `CompletionOutput` from an OpenAI `/v1/completions` answer."""
    try:
        choice = body["choices"][0]
        usage = body["usage"]
        output = {
            "text": str(choice["text"]),
            "num_prompt_tokens": int(usage["prompt_tokens"]),
            "num_completion_tokens": int(usage["completion_tokens"]),
            "tokens": None,
        }
        if with_tokens:
            output["tokens"] = openai_tokens(choice.get("logprobs"))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise EngineBodyError(f"unexpected OpenAI /v1/completions body: {exc!r}") from None
    return output


def openai_tokens(logprobs: Any) -> list[dict[str, Any]]:
    """OpenAI completions `logprobs` (`tokens` + `token_logprobs`) as Launch tokens."""
    if not logprobs:
        return []
    pairs = zip(logprobs["tokens"], logprobs["token_logprobs"], strict=False)
    return [token_output(str(text), float(lp if lp is not None else 0.0)) for text, lp in pairs]
