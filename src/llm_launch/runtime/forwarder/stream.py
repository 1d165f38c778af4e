"""Streams, chunk by chunk: engine SSE in, Launch stream chunks out (pure, stateful mappers).

Called by the forwarder app (`runtime.forwarder.app`) for `POST /stream`, once per piece of
the engine's response body as it arrives; the chunks it returns go straight to the client
as server-sent events. No I/O and no clock: the caller passes the error timestamp in.

SGLang's streamed `/generate` events carry the *cumulative* text (and, with logprobs, the
cumulative token list); `SglangStream` turns them into deltas. OpenAI-compatible engines
already send deltas; `OpenAIStream` carries the token counts they report on the side.
"""

from __future__ import annotations

from typing import Any

from llm_launch.runtime.launch_api import (
    EngineBodyError,
    compact_json,
    loads,
    openai_tokens,
    sglang_tokens,
    token_output,
)

__all__ = [
    "DONE",
    "EngineStreamError",
    "OpenAIStream",
    "SglangStream",
    "SseDecoder",
    "encode_event",
    "stream_chunk",
    "stream_error_chunk",
]

DONE = b"[DONE]"


class EngineStreamError(Exception):
    """The engine reported an error inside its stream (after the 200 was sent)."""

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.status_code = status_code


class SseDecoder:
    """Split a server-sent-event byte stream, fed in arbitrary pieces, into `data` payloads."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *events, self._buffer = buffer.split(b"\n\n")
        payloads = []
        for event in events:
            lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
            if lines:
                payloads.append(b"\n".join(_strip_field(line) for line in lines))
        return payloads


def _strip_field(line: bytes) -> bytes:
    value = line[5:]
    return value[1:] if value.startswith(b" ") else value


def stream_chunk(request_id: str, output: dict[str, Any]) -> dict[str, Any]:
    """Launch's `CompletionStreamV1Response` carrying one output chunk."""
    return {"request_id": request_id, "output": output}


def stream_error_chunk(
    request_id: str, status_code: int, message: str, timestamp: str
) -> dict[str, Any]:
    """Launch's `CompletionStreamV1Response` carrying a `StreamError` (the stream ends)."""
    error = {"status_code": status_code, "content": {"error": message, "timestamp": timestamp}}
    return {"request_id": request_id, "output": None, "error": error}


def encode_event(chunk: dict[str, Any]) -> bytes:
    """One server-sent event carrying `chunk` as JSON."""
    return b"data: " + compact_json(chunk) + b"\n\n"


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        event = loads(payload)
    except ValueError as exc:
        raise EngineBodyError(f"engine stream event is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EngineBodyError("engine stream event is not a JSON object")
    error = event.get("error")
    if error:
        raise _stream_error(error)
    return event


def _stream_error(error: Any) -> EngineStreamError:
    if isinstance(error, dict):
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        return EngineStreamError(str(error.get("message", error)), status)
    return EngineStreamError(str(error))


def _combined_token(tokens: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Launch chunks carry one token; several new tokens become one (texts joined, joint
    log-probability = sum of their log-probabilities)."""
    if not tokens:
        return None
    if len(tokens) == 1:
        return tokens[0]
    return token_output("".join(t["token"] for t in tokens), sum(t["log_prob"] for t in tokens))


class SglangStream:
    """SGLang `/generate` stream events (cumulative text) -> Launch chunks (deltas)."""

    def __init__(self, *, with_tokens: bool) -> None:
        self._with_tokens = with_tokens
        self._text = ""
        self._completion_tokens = 0

    def flush(self) -> dict[str, Any] | None:
        return None  # nothing is ever held back

    def output(self, payload: bytes) -> dict[str, Any]:
        event = _parse(payload)
        try:
            text = str(event["text"])
            meta = event["meta_info"]
            completion_tokens = int(meta["completion_tokens"])
            output = {
                "text": self._delta(text),
                "finished": meta.get("finish_reason") is not None,
                "num_prompt_tokens": int(meta["prompt_tokens"]),
                "num_completion_tokens": completion_tokens,
                "token": self._token(meta, completion_tokens) if self._with_tokens else None,
            }
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineBodyError(f"unexpected SGLang stream event: {exc!r}") from None
        self._completion_tokens = completion_tokens
        return output

    def _delta(self, text: str) -> str:
        previous, self._text = self._text, text
        # Cumulative text extends the previous one; anything else is passed on whole.
        return text[len(previous) :] if text.startswith(previous) else text

    def _token(self, meta: dict[str, Any], completion_tokens: int) -> dict[str, Any] | None:
        new = completion_tokens - self._completion_tokens
        logprobs = meta.get("output_token_logprobs") or []
        if new <= 0 or not logprobs:
            return None
        return _combined_token(sglang_tokens(logprobs[-new:]))


class OpenAIStream:
    """OpenAI `/v1/completions` stream events (deltas) -> Launch chunks.

    Token counts come from `usage`: vLLM sends it on every chunk when asked with
    `continuous_usage_stats`. An engine that reports usage only in a trailing usage-only
    event (sent right after the finishing chunk, before `[DONE]`) gets its finishing chunk
    held until then, so the one `finished` chunk carries the counts; `flush()` releases it
    when the stream ends without one. Returns None for events that carry nothing new.
    """

    def __init__(self, *, with_tokens: bool) -> None:
        self._with_tokens = with_tokens
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None
        self._held: dict[str, Any] | None = None

    def output(self, payload: bytes) -> dict[str, Any] | None:
        event = _parse(payload)
        try:
            usage = event.get("usage")
            if usage:
                self._prompt_tokens = int(usage["prompt_tokens"])
                self._completion_tokens = int(usage["completion_tokens"])
            choices = event.get("choices") or []
            if not choices:
                return self.flush() if usage else None
            return self._chunk(choices[0], counted=bool(usage))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineBodyError(f"unexpected OpenAI stream event: {exc!r}") from None

    def flush(self) -> dict[str, Any] | None:
        """The held finishing chunk, with the counts known by now."""
        held, self._held = self._held, None
        if held is not None:
            held["num_prompt_tokens"] = self._prompt_tokens
            held["num_completion_tokens"] = self._completion_tokens
        return held

    def _chunk(self, choice: dict[str, Any], *, counted: bool) -> dict[str, Any] | None:
        token = None
        if self._with_tokens:
            token = _combined_token(openai_tokens(choice.get("logprobs")))
        output = {
            "text": str(choice.get("text") or ""),
            "finished": choice.get("finish_reason") is not None,
            "num_prompt_tokens": self._prompt_tokens,
            "num_completion_tokens": self._completion_tokens,
            "token": token,
        }
        if output["finished"] and not counted:
            self._held = output  # its counts come in the usage-only event next
            return None
        return output
