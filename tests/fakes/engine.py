"""A tiny fake engine (SGLang- and vLLM-shaped HTTP API) for the forwarder's tests and bench.

Run as a process by `tests/integration/test_forwarder.py` and `bench/forwarder.py`; the
forwarder under test is its caller, over real loopback sockets. It is not the simulator
(`llm_launch.simulator`): no latency model, no rendezvous, just the wire shapes plus a few
control routes a test can drive:

- `POST /fake/health {"ok": bool}`: makes `/health_generate` (and readiness completions)
  answer 200 or 503.
- `POST /fake/hold {"on": bool}`: streams stop before their last event until
  `POST /fake/release`; `GET /fake/state` tells how many wait there, so a test can prove a
  proxy forwards chunks before the engine has sent them all, with no timing involved.
- `GET /fake/state`: counters, and the last engine request body (to check mappings).

Generation: `max_new_tokens` (or `max_tokens`) tokens `"t0 ", "t1 ", ...`, one per stream
event, `--chunk-interval-s` apart.

    python -m tests.fakes.engine --port 5005 [--chunk-interval-s 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]
PROMPT_TOKENS = 3


class FakeEngine:
    def __init__(self, chunk_interval_s: float = 0.0, model: str = "fake-model") -> None:
        self.chunk_interval_s = chunk_interval_s
        self.model = model
        self.healthy = True
        self.hold = False
        self.release = asyncio.Event()
        self.state: dict[str, Any] = {
            "requests": 0, "streams_started": 0, "streams_finished": 0, "held": 0,
            "disconnects": 0, "health_checks": 0, "last_body": None, "last_path": None,
        }  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read(receive)
        route = ROUTES.get((scope["method"], scope["path"]))
        if route is None:
            return await _json(send, 404, {"detail": "Not Found"})
        self.state["requests"] += 1
        data = json.loads(body) if body else {}
        if not scope["path"].startswith("/fake"):
            self.state["last_body"], self.state["last_path"] = data, scope["path"]
        await route(self, data, receive, send)

    # --- SGLang ---------------------------------------------------------------------

    async def health(self, data: Any, receive: Receive, send: Send) -> None:
        await _json(send, 200, {})

    async def health_generate(self, data: Any, receive: Receive, send: Send) -> None:
        self.state["health_checks"] += 1
        await _json(send, 200 if self.healthy else 503, {} if self.healthy else {"detail": "sick"})

    async def generate(self, data: dict[str, Any], receive: Receive, send: Send) -> None:
        n = int(data.get("sampling_params", {}).get("max_new_tokens", 16))
        logprobs = bool(data.get("return_logprob"))
        if not data.get("stream"):
            return await _json(send, 200, _sglang_event(n, n, logprobs, finished=True))
        events = (_sglang_event(i, n, logprobs, finished=i == n) for i in range(1, n + 1))
        await self._stream(events, receive, send)

    # --- OpenAI ---------------------------------------------------------------------

    async def completions(self, data: dict[str, Any], receive: Receive, send: Send) -> None:
        n = int(data.get("max_tokens", 16))
        if n == 1 and data.get("prompt") == "ping":
            self.state["health_checks"] += 1
            if not self.healthy:
                return await _json(send, 503, {"detail": "sick"})
        if not data.get("stream"):
            return await _json(send, 200, _completion(n, "text_completion"))
        await self._stream(_completion_events(n, "text_completion"), receive, send)

    async def chat(self, data: dict[str, Any], receive: Receive, send: Send) -> None:
        n = int(data.get("max_tokens") or data.get("max_completion_tokens") or 16)
        if not data.get("stream"):
            return await _json(send, 200, _completion(n, "chat.completion"))
        await self._stream(_completion_events(n, "chat.completion.chunk"), receive, send)

    async def models(self, data: Any, receive: Receive, send: Send) -> None:
        await _json(send, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})

    # --- control --------------------------------------------------------------------

    async def set_health(self, data: dict[str, Any], receive: Receive, send: Send) -> None:
        self.healthy = bool(data["ok"])
        await _json(send, 200, {"healthy": self.healthy})

    async def set_hold(self, data: dict[str, Any], receive: Receive, send: Send) -> None:
        self.hold, self.release = bool(data["on"]), asyncio.Event()
        await _json(send, 200, {"hold": self.hold})

    async def do_release(self, data: Any, receive: Receive, send: Send) -> None:
        self.release.set()
        await _json(send, 200, {"released": True})

    async def get_state(self, data: Any, receive: Receive, send: Send) -> None:
        await _json(send, 200, self.state)

    # --- streaming ------------------------------------------------------------------

    async def _stream(self, events: Any, receive: Receive, send: Send) -> None:
        self.state["streams_started"] += 1
        events = list(events)
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        for index, event in enumerate([*events, "[DONE]"]):
            if index == len(events) - 1 and self.hold and not await self._wait_release(receive):
                return
            if index and self.chunk_interval_s:
                await asyncio.sleep(self.chunk_interval_s)
            payload = event if isinstance(event, str) else json.dumps(event)
            body = f"data: {payload}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.state["streams_finished"] += 1

    async def _wait_release(self, receive: Receive) -> bool:
        """Wait at the gate; False when the client (the proxy) went away meanwhile."""
        self.state["held"] += 1
        released = asyncio.ensure_future(self.release.wait())
        gone = asyncio.ensure_future(_disconnected(receive))
        done, _ = await asyncio.wait({released, gone}, return_when=asyncio.FIRST_COMPLETED)
        self.state["held"] -= 1
        for task in (released, gone):
            task.cancel()
        if gone in done:
            self.state["disconnects"] += 1
            return False
        return True


ROUTES: dict[tuple[str, str], Callable[[FakeEngine, Any, Receive, Send], Awaitable[None]]] = {
    ("GET", "/health"): FakeEngine.health,
    ("GET", "/health_generate"): FakeEngine.health_generate,
    ("POST", "/generate"): FakeEngine.generate,
    ("POST", "/v1/completions"): FakeEngine.completions,
    ("POST", "/v1/chat/completions"): FakeEngine.chat,
    ("GET", "/v1/models"): FakeEngine.models,
    ("POST", "/fake/health"): FakeEngine.set_health,
    ("POST", "/fake/hold"): FakeEngine.set_hold,
    ("POST", "/fake/release"): FakeEngine.do_release,
    ("GET", "/fake/state"): FakeEngine.get_state,
}


def _text(n: int) -> str:
    return "".join(f"t{i} " for i in range(n))


def _sglang_event(done: int, total: int, logprobs: bool, *, finished: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": "fake",
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": done,
        "finish_reason": {"type": "length", "length": total} if finished else None,
    }
    if logprobs:  # cumulative, like the text
        meta["output_token_logprobs"] = [[-0.5, 100 + i, f"t{i} "] for i in range(done)]
    return {"text": _text(done), "meta_info": meta}


def _usage(done: int) -> dict[str, int]:
    total = PROMPT_TOKENS + done
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": done, "total_tokens": total}


def _envelope(kind: str, choice: dict[str, Any], done: int, created: int) -> dict[str, Any]:
    return {
        "id": "cmpl-fake",
        "object": kind,
        "created": created,
        "model": "fake-model",
        "choices": [choice],
        "usage": _usage(done),
    }


def _completion(n: int, kind: str) -> dict[str, Any]:
    if kind == "chat.completion":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": _text(n)}}
    else:
        choice = {"index": 0, "text": _text(n), "logprobs": None}
    choice["finish_reason"] = "length"
    return _envelope(kind, choice, n, int(time.time()))


def _completion_events(n: int, kind: str) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        finish = "length" if i == n - 1 else None
        if kind == "chat.completion.chunk":
            choice: dict[str, Any] = {"index": 0, "delta": {"content": f"t{i} "}}
        else:
            choice = {"index": 0, "text": f"t{i} ", "logprobs": None}
        choice["finish_reason"] = finish
        events.append(_envelope(kind, choice, i + 1, 0))
    return events


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _json(send: Send, status: int, body: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-interval-s", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(
        FakeEngine(args.chunk_interval_s), host=args.host, port=args.port, loop="uvloop",
        http="httptools", lifespan="off", access_log=False, log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
