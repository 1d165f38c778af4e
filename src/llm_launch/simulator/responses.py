"""Response helpers shared by the routes: error bodies and Server-Sent Events.

Used by `simulator.app`, `simulator.native` and `simulator.openai_api`. Errors use
SGLang's OpenAI-style body `{"object": "error", "message", "type", "param", "code"}`,
which the official `openai` client understands. A stream is a series of
`data: {json}\\n\\n` events, each written to the socket as soon as it is produced,
ending with `data: [DONE]\\n\\n`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, StreamingResponse

ENGINE_NAME = "llm-launch-simulator"  # `owned_by`, `engine`: responses say they are simulated
DONE_EVENT = b"data: [DONE]\n\n"
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {
        "object": "error",
        "message": message,
        "type": _ERROR_TYPES.get(status, "InternalServerError"),
        "param": param,
        "code": status,
    }


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status)


def sse_event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
