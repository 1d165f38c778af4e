"""The engine's API as the forwarder sees it: SGLang native, or OpenAI-compatible (vLLM).

Called by the forwarder app (`runtime.forwarder.app`) to build the engine request for a
Launch `POST /predict` or `POST /stream`, to map the engine's answer back (through the pure
functions of `runtime.launch_api` and `runtime.forwarder.stream`), and to build the
readiness check's request. Its next hop is the engine, through the app's transport.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Protocol

from llm_launch.runtime.forwarder.client import Headers
from llm_launch.runtime.forwarder.stream import OpenAIStream, SglangStream
from llm_launch.runtime.launch_api import (
    CompletionRequest,
    compact_json,
    launch_output_from_openai,
    launch_output_from_sglang,
    openai_completion_body,
    sglang_generate_body,
)

__all__ = [
    "ENGINE_APIS",
    "EngineApi",
    "EngineApiName",
    "EngineCall",
    "OpenAIApi",
    "SglangApi",
    "StreamMapper",
    "engine_api",
]

EngineApiName = Literal["sglang", "openai"]
ENGINE_APIS: tuple[EngineApiName, ...] = ("sglang", "openai")
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
READINESS_PROMPT = "ping"


class EngineCall(NamedTuple):
    """One request to the engine: the client adds Host and Content-Length."""

    method: str
    target: str  # path (and query)
    headers: Headers
    body: bytes


class StreamMapper(Protocol):
    def output(self, payload: bytes) -> dict[str, Any] | None: ...

    def flush(self) -> dict[str, Any] | None: ...


class EngineApi(Protocol):
    """How to ask one kind of engine for a completion, and read its answer."""

    def generate(self, request: CompletionRequest, *, stream: bool) -> EngineCall: ...

    def output(self, body: Any, *, with_tokens: bool) -> dict[str, Any]: ...

    def stream(self, *, with_tokens: bool) -> StreamMapper: ...

    def readiness_request(self) -> EngineCall: ...


def post_json(target: str, body: dict[str, Any]) -> EngineCall:
    return EngineCall("POST", target, JSON_HEADERS, compact_json(body))


class _Base:
    def __init__(self, served_model_name: str | None, check_path: str | None) -> None:
        self._check_path = check_path
        self._model = served_model_name

    def readiness_request(self) -> EngineCall:
        """The engine's own generation check when it has one, else a one-token completion."""
        if self._check_path is not None:
            return EngineCall("GET", self._check_path, [], b"")
        body = {"prompt": READINESS_PROMPT, "max_tokens": 1, "temperature": 0}
        if self._model:
            body["model"] = self._model
        return post_json("/v1/completions", body)


class SglangApi(_Base):
    """SGLang's native `POST /generate`."""

    def generate(self, request: CompletionRequest, *, stream: bool) -> EngineCall:
        return post_json("/generate", sglang_generate_body(request, stream=stream))

    def output(self, body: Any, *, with_tokens: bool) -> dict[str, Any]:
        return launch_output_from_sglang(body, with_tokens=with_tokens)

    def stream(self, *, with_tokens: bool) -> StreamMapper:
        return SglangStream(with_tokens=with_tokens)


class OpenAIApi(_Base):
    """An OpenAI-compatible `POST /v1/completions` (vLLM)."""

    def generate(self, request: CompletionRequest, *, stream: bool) -> EngineCall:
        body = openai_completion_body(request, model=self._model, stream=stream)
        return post_json("/v1/completions", body)

    def output(self, body: Any, *, with_tokens: bool) -> dict[str, Any]:
        return launch_output_from_openai(body, with_tokens=with_tokens)

    def stream(self, *, with_tokens: bool) -> StreamMapper:
        return OpenAIStream(with_tokens=with_tokens)


def engine_api(
    name: EngineApiName,
    *,
    served_model_name: str | None = None,
    ready_check_path: str | None = None,
) -> EngineApi:
    if name == "sglang":
        return SglangApi(served_model_name, ready_check_path)
    return OpenAIApi(served_model_name, ready_check_path)
