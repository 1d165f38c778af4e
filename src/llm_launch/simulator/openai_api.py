"""OpenAI-compatible routes on rank 0: /v1/models, /v1/completions, /v1/chat/completions.

Mounted by `simulator.app.build_app`; every generation goes through `simulator.engine`.
`model` must be the served model name or be left out (else `UnknownModel`, a 404).
Streams send one event per generated token as it is produced; with
`stream_options.include_usage` a last event carries `usage` and no choices. `usage` is
honest under the token rule of `simulator.tokens`; chat prompts are counted as rendered
by `simulator.prompts.render_chat`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_launch.simulator.engine import Engine, Generation, Step, Unavailable
from llm_launch.simulator.prompts import render_chat
from llm_launch.simulator.protocol import ChatCompletionRequest, CompletionRequest
from llm_launch.simulator.responses import (
    CLIENT_LEFT,
    DONE_EVENT,
    ENGINE_NAME,
    error_body,
    event_stream,
    sse_event,
    unless_client_leaves,
)

# The part of a streamed choice that carries the new text: (step, is it the first) -> fields.
DeltaBuilder = Callable[[Step, bool], dict[str, Any]]


class UnknownModel(LookupError):
    def __init__(self, requested: str) -> None:
        super().__init__(f"The model `{requested}` does not exist.")


def openai_router(
    engine: Engine, served_model_name: str, model_path: str, context_length: int | None
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    created = int(time.time())

    def check_model(requested: str | None) -> None:
        if requested is not None and requested != served_model_name:
            raise UnknownModel(requested)

    @router.get("/models")
    async def models() -> Response:
        card = {
            "id": served_model_name,
            "object": "model",
            "created": created,
            "owned_by": ENGINE_NAME,
            "root": model_path,
            "max_model_len": context_length,
        }
        return JSONResponse({"object": "list", "data": [card]})

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check_model(body.model)
        body.check_single_choice()
        generation = engine.start(body.prompt_text(), body.sampling())
        shape = _Shape("cmpl", "text_completion", "text_completion", served_model_name)
        if body.streaming:
            return event_stream(_stream(generation, shape, _text_delta, body.include_usage))
        step = await unless_client_leaves(generation.final(), request)
        if step is None:
            return CLIENT_LEFT
        choice = {"index": 0, "text": step.text, "logprobs": None, **_finish(step)}
        return JSONResponse(shape.body(generation, [choice], usage=_usage(generation, step)))

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        check_model(body.model)
        body.check_single_choice()
        prompt = render_chat(message.turn() for message in body.messages)
        generation = engine.start(prompt, body.sampling())
        shape = _Shape("chatcmpl", "chat.completion", "chat.completion.chunk", served_model_name)
        if body.streaming:
            return event_stream(_stream(generation, shape, _chat_delta, body.include_usage))
        step = await unless_client_leaves(generation.final(), request)
        if step is None:
            return CLIENT_LEFT
        message = {"role": "assistant", "content": step.text}
        choice = {"index": 0, "message": message, "logprobs": None, **_finish(step)}
        return JSONResponse(shape.body(generation, [choice], usage=_usage(generation, step)))

    return router


class _Shape:
    """The envelope shared by every body and chunk of one response kind."""

    def __init__(self, id_prefix: str, obj: str, chunk_obj: str, model: str) -> None:
        self.id_prefix = id_prefix
        self.object = obj
        self.chunk_object = chunk_obj
        self.model = model
        self.created = int(time.time())

    def body(
        self,
        generation: Generation,
        choices: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None,
        chunk: bool = False,
    ) -> dict[str, Any]:
        return {
            "id": f"{self.id_prefix}-{generation.id}",
            "object": self.chunk_object if chunk else self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }


async def _stream(
    generation: Generation, shape: _Shape, delta: DeltaBuilder, include_usage: bool
) -> AsyncIterator[bytes]:
    last: Step | None = None
    try:
        async for step in generation.steps():
            choice = {"index": 0, **delta(step, last is None), "logprobs": None, **_finish(step)}
            yield sse_event(shape.body(generation, [choice], usage=None, chunk=True))
            last = step
    except Unavailable as exc:
        yield sse_event({"error": error_body(503, str(exc))})
    else:
        if include_usage and last is not None:
            usage = _usage(generation, last)
            yield sse_event(shape.body(generation, [], usage=usage, chunk=True))
    yield DONE_EVENT


def _text_delta(step: Step, first: bool) -> dict[str, Any]:
    return {"text": step.delta}


def _chat_delta(step: Step, first: bool) -> dict[str, Any]:
    if first:
        return {"delta": {"role": "assistant", "content": step.delta}}
    return {"delta": {"content": step.delta}}


def _finish(step: Step) -> dict[str, Any]:
    if step.finish is None:
        return {"finish_reason": None}
    return {"finish_reason": step.finish.reason, "matched_stop": step.finish.matched}


def _usage(generation: Generation, step: Step) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": generation.prompt_tokens + step.completion_tokens,
    }
    if generation.cached_tokens is not None:  # a prefix cache is modelled: say what it held
        usage["prompt_tokens_details"] = {"cached_tokens": generation.cached_tokens}
    return usage
