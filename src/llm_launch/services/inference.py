"""Route inference to an endpoint's ready groups (least requests in flight) and relay answers.

Called by the completion routers (api/routers/completions.py, openai.py); the next hop is
the forwarder on each group's leader. The upstream client is created once and pooled;
streamed bytes are relayed as they arrive, never buffered.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from llm_launch.backends.base import Backend
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import ServiceUnavailable, UpstreamFailed
from llm_launch.store.repository import EndpointRepository

CACHE_TTL_S = 0.5  # endpoint lookups are cached this long; ownership is still checked
CONNECT_TIMEOUT_S = 2.0


@dataclass
class UpstreamReply:
    """A non-streamed answer from a forwarder."""

    status_code: int
    body: bytes
    content_type: str


class InferenceRouter:
    def __init__(self, repository: EndpointRepository, backend: Backend | None) -> None:
        self.repository = repository
        self.backend = backend
        self._in_flight: dict[str, int] = {}
        self._cache: dict[tuple[str, str], tuple[float, Endpoint]] = {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=None, write=30.0, pool=5.0),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def endpoint(self, owner: str, name: str) -> Endpoint:
        """The caller's endpoint (NotFound for unknown or someone else's)."""
        key = (owner, name)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_TTL_S:
            return cached[1]
        endpoint = await self.repository.get(owner, name)
        self._cache[key] = (time.monotonic(), endpoint)
        return endpoint

    def pick_target(self, endpoint: Endpoint) -> str:
        targets = self.backend.targets(endpoint) if self.backend is not None else []
        if not targets:
            reason = f": {endpoint.status_reason}" if endpoint.status_reason else ""
            raise ServiceUnavailable(
                f"endpoint {endpoint.name!r} has no ready workers (status "
                f"{endpoint.status.value}{reason})"
            )
        return min(targets, key=lambda t: self._in_flight.get(t, 0))

    async def post(self, target: str, path: str, body: dict[str, Any]) -> UpstreamReply:
        self._in_flight[target] = self._in_flight.get(target, 0) + 1
        try:
            response = await self._http.post(f"{target}{path}", json=body)
        except httpx.HTTPError as exc:
            raise UpstreamFailed(f"upstream {target} failed: {_describe(exc)}") from exc
        finally:
            self._in_flight[target] -= 1
        return UpstreamReply(
            response.status_code,
            response.content,
            response.headers.get("content-type", "application/json"),
        )

    async def open_stream(
        self, target: str, path: str, body: dict[str, Any]
    ) -> tuple[httpx.Response, AsyncIterator[bytes]]:
        """Start a streamed call; the iterator relays chunks as they come and closes upstream."""
        self._in_flight[target] = self._in_flight.get(target, 0) + 1
        request = self._http.build_request("POST", f"{target}{path}", json=body)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            self._in_flight[target] -= 1
            raise UpstreamFailed(f"upstream {target} failed: {_describe(exc)}") from exc

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()
                self._in_flight[target] -= 1

        return response, relay()


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
