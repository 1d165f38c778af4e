"""Readiness of the engine behind the forwarder: a real generation check, briefly cached.

Called by the forwarder app's `GET /readyz` (probed by Kubernetes or the local backend);
its next hop is the engine: `GET <--ready-check-path>` (SGLang's `/health_generate`, a real
one-token generation) or, where the engine has no such route, a one-token
`POST /v1/completions` (vLLM).

Probes come often and from several places; the result is cached for `cache_s` seconds and
concurrent checks share one in-flight call, so probes never pile generations on the engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from llm_launch.runtime.forwarder.client import EngineClient
from llm_launch.runtime.forwarder.engines import EngineCall

__all__ = ["Readiness", "ReadinessCheck"]


@dataclass(frozen=True)
class Readiness:
    """One check's outcome; `reason` says why the engine is not ready."""

    ready: bool
    reason: str
    status_code: int | None = None  # the engine's answer, when there was one

    def body(self) -> dict[str, object]:
        return {"ready": self.ready, "reason": self.reason, "engine_status": self.status_code}


class ReadinessCheck:
    """Runs the engine's generation check at most once per `cache_s` seconds."""

    def __init__(
        self,
        client: EngineClient,
        call: Callable[[], EngineCall],
        *,
        cache_s: float = 1.0,
        timeout_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._call = call
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._cached: Readiness | None = None
        self._expires = 0.0
        self._in_flight: asyncio.Task[Readiness] | None = None

    async def check(self) -> Readiness:
        if self._cached is not None and self._clock() < self._expires:
            return self._cached
        if self._in_flight is None:
            self._in_flight = asyncio.ensure_future(self._run())
            self._in_flight.add_done_callback(self._store)
        return await asyncio.shield(self._in_flight)

    def _store(self, task: asyncio.Task[Readiness]) -> None:
        self._in_flight = None
        if not task.cancelled() and task.exception() is None:
            self._cached = task.result()
            self._expires = self._clock() + self._cache_s

    async def _run(self) -> Readiness:
        call = self._call()
        what = f"{call.method} {call.target}"
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.request(*call)
                try:
                    body = await response.read()
                finally:
                    await response.aclose()
        except TimeoutError:
            return Readiness(False, f"engine check {what} timed out after {self._timeout_s}s")
        except httpx.TransportError as exc:
            return Readiness(False, f"engine unreachable ({what}): {exc}")
        if response.status != 200:
            detail = _snippet(body)
            return Readiness(
                False, f"engine check {what} answered {response.status}: {detail}", response.status
            )
        return Readiness(True, f"engine check {what} passed", 200)


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "detail" in parsed:
            text = str(parsed["detail"])
    except ValueError:
        pass
    return text[:limit] or "(empty body)"
