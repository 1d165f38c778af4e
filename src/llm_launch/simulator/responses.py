"""Response helpers shared by the routes: error bodies and Server-Sent Events.

Used by `simulator.app`, `simulator.native` and `simulator.openai_api`. Errors use
SGLang's OpenAI-style body `{"object": "error", "message", "type", "param", "code"}`,
which the official `openai` client understands. A stream is a series of
`data: {json}\\n\\n` events, each written to the socket as soon as it is produced,
ending with `data: [DONE]\\n\\n`. A non-streamed answer is awaited with
`unless_client_leaves`, so a client that goes away ends its generation, as SGLang and
vLLM abort the request of a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

T = TypeVar("T")

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


# What nginx logs for a request whose client closed the connection; nobody reads it.
CLIENT_LEFT = Response(status_code=499)


async def unless_client_leaves(work: Coroutine[Any, Any, T], request: Request) -> T | None:
    """Await `work`; if the client disconnects first, cancel it and return None.

    The request body has been read by then, so the next message the server delivers is
    the disconnect (uvicorn sends it when the connection closes)."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job  # its clean-up (metrics) runs before the route answers
        return None
    finally:
        gone.cancel()
        job.cancel()  # a no-op once done; if this route itself is cancelled, stops the work


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
