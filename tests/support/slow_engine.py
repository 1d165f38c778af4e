"""An engine that never finishes a generation: it holds every one until its client leaves.

Run as a process by the data-plane tests (`tests/security/`), behind a real forwarder; its
caller is the forwarder under test. It counts the generations it holds (`open`) and the
ones whose client went away (`cancelled`), so a test can see, without any timing, that a
disconnect reached the engine. It also records every request header it has seen, so a test
can check that a proxy in front of it passed on no credential.

- `GET /health_generate`, `GET /health`: 200 at once (the forwarder's readiness).
- `POST /generate`, `/v1/completions`, `/v1/chat/completions`: held until disconnect
  (streamed or not: the streamed ones send their headers, then nothing).
- `GET /fake/state`: `{"open": n, "cancelled": n, "header_names": [...]}`.

    python -m tests.support.slow_engine --port 5005
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELD = {"/generate", "/v1/completions", "/v1/chat/completions"}


class SlowEngine:
    def __init__(self) -> None:
        self.open = 0
        self.cancelled = 0
        self.header_names: set[str] = set()
        self.header_values: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        for name, value in scope["headers"]:
            self.header_names.add(name.decode("latin-1").lower())
            self.header_values.add(value.decode("latin-1"))
        body = await _read(receive)
        path = scope["path"]
        if path in ("/health", "/health_generate"):
            return await _json(send, 200, {})
        if path == "/fake/state":
            state = {
                "open": self.open,
                "cancelled": self.cancelled,
                "header_names": sorted(self.header_names),
                "header_values": sorted(self.header_values),
            }
            return await _json(send, 200, state)
        if path not in HELD:
            return await _json(send, 404, {"detail": "Not Found"})
        if json.loads(body or b"{}").get("stream"):
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.open += 1
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.cancelled += 1
        finally:
            self.open -= 1


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _json(send: Send, status: int, body: Any) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        SlowEngine(), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
        lifespan="off", access_log=False, log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
