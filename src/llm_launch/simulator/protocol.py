"""Request bodies of the simulator's HTTP API (SGLang native and OpenAI), as pydantic models.

Used by `simulator.native` and `simulator.openai_api` to parse bodies; turned into an
engine `Sampling` here, so both APIs map their fields the same way. Unknown fields are
accepted and ignored (clients send many sampling options the simulator does not model);
invalid known fields are a 400 (see `simulator.app`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llm_launch.simulator.engine import DEFAULT_MAX_TOKENS, BadGeneration, Sampling
from llm_launch.simulator.prompts import ChatTurn


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _sampling(
    max_tokens: int | None,
    seed: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> Sampling:
    return Sampling(
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        seed=0 if seed is None else seed,
        temperature=1.0 if temperature is None else temperature,
        stop=_stops(stop),
    )


# SGLang native: POST /generate


class NativeSamplingParams(_Body):
    max_new_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None  # llm-launch's name
    sampling_seed: int | None = None  # SGLang's name


class GenerateRequest(_Body):
    text: str
    sampling_params: NativeSamplingParams = Field(default_factory=NativeSamplingParams)
    stream: bool = False

    def sampling(self) -> Sampling:
        params = self.sampling_params
        seed = params.seed if params.seed is not None else params.sampling_seed
        return _sampling(params.max_new_tokens, seed, params.temperature, params.stop)


# OpenAI: POST /v1/completions and /v1/chat/completions


class StreamOptions(_Body):
    include_usage: bool = False


class _OpenAIRequest(_Body):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def check_single_choice(self) -> None:
        if self.n not in (None, 1):
            raise BadGeneration(f"n={self.n}: the simulator generates one choice per request")


class CompletionRequest(_OpenAIRequest):
    prompt: str | list[str]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise BadGeneration(
                f"prompt is a list of {len(self.prompt)} strings: "
                "the simulator takes one prompt per request"
            )
        return self.prompt[0]

    def sampling(self) -> Sampling:
        return _sampling(self.max_tokens, self.seed, self.temperature, self.stop)


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: str
    content: str | list[ContentPart] | None = None

    def turn(self) -> ChatTurn:
        if self.content is None or isinstance(self.content, str):
            return ChatTurn(self.role, self.content or "")
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise BadGeneration(
                    f"content part of type {part.type!r}: the simulator takes text only"
                )
            texts.append(part.text)
        return ChatTurn(self.role, "\n".join(texts))


class ChatCompletionRequest(_OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)

    def sampling(self) -> Sampling:
        max_tokens = (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )
        return _sampling(max_tokens, self.seed, self.temperature, self.stop)
