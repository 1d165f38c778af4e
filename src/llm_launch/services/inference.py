"""Route inference to an endpoint's ready groups (least requests in flight) and relay answers.

Among the groups with the fewest requests in flight one is drawn at random: sequential
traffic (always one in flight, so every group ties at zero) spreads over all ready groups
instead of landing on the first one, and a busier group is still never chosen over an
idler one.

Called by the inference gateway (api/gateway.py), which finds the endpoint in the
in-memory routing table (services/routing_table.py): no database read per request. The
next hop is the forwarder on each group's leader. Every request crosses this module, so
it uses the forwarder's own pooled keep-alive client (runtime/forwarder/transport.py: an
order of magnitude less CPU than httpx), one pool per target, and relays streamed bytes
as they arrive.

Every request carries the endpoint's forwarder token (`Authorization: Bearer`): the
forwarders answer nobody else. A caller that stops waiting (the API route, when its client
leaves) cancels `post` or the reply's iteration; the pooled connection is then closed,
never returned half-read, which tells the forwarder to cancel the engine's request.
The waits are bounded with `runtime.deadlines` (asyncio.timeout's semantics, a fraction of
its CPU: three limits per request).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from llm_launch.domain import routing
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import ServiceUnavailable, UpstreamFailed, UpstreamTimeout
from llm_launch.runtime.deadlines import deadline
from llm_launch.runtime.forwarder.transport import EnginePool
from llm_launch.services.routing_table import RoutingTable

MAX_CACHE_AWARE = 4096  # endpoints whose prefix trees this router keeps
CONNECT_TIMEOUT_S = 2.0
DRAIN_RETRIES = 3  # further tries after a draining group refused a request
DRAIN_PAUSE_S = 0.05  # before trying a refused target again: doubled each time
JSON_HEADERS = [(b"Content-Type", b"application/json")]


@dataclass
class UpstreamReply:
    """An answer from a forwarder; `chunks` yields its body as it arrives."""

    status_code: int
    content_type: str
    chunks: AsyncIterator[bytes]

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks])


class TargetSource(Protocol):
    """Where an endpoint's ready groups are: the backend (`serve`), or the targets the
    reconciler stored, through the routing table (`llm-launch gateway`)."""

    def targets(self, endpoint: Endpoint) -> list[str]: ...


class InferenceRouter:
    def __init__(
        self,
        table: RoutingTable,
        backend: TargetSource | None,
        *,
        timeout_s: float = 600.0,
        chance: random.Random | None = None,
    ) -> None:
        """`timeout_s` bounds the wait for an answer to start and, when streaming, every
        pause between two chunks: a group that accepts requests but never answers (a
        stopped process) costs the client a 504 after it, never a hang. `chance` draws
        among equally busy groups (a seeded one makes the draw repeatable)."""
        self.table = table
        self.backend = backend
        self.timeout_s = timeout_s
        self._chance = chance or random.Random()
        self._in_flight: dict[str, int] = {}
        self._cache_aware: dict[str, routing.CacheAware] = {}  # by endpoint id
        self._pools: dict[str, EnginePool] = {}

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    def endpoint(self, owner: str, name: str) -> Endpoint:
        """The caller's endpoint (NotFound for unknown or someone else's), from memory."""
        return self.table.lookup(owner, name)

    def pick_target(
        self, endpoint: Endpoint, among: list[str] | None = None, prompt: str = ""
    ) -> str:
        """The target the endpoint's routing policy chooses (`domain.routing`; by default
        one of those with the fewest requests in flight through this router, drawn at
        random among them); ServiceUnavailable when there is none."""
        targets = among or (self.backend.targets(endpoint) if self.backend is not None else [])
        if not targets:
            reason = f": {endpoint.status_reason}" if endpoint.status_reason else ""
            raise ServiceUnavailable(
                f"endpoint {endpoint.name!r} has no ready workers (status "
                f"{endpoint.status.value}{reason})"
            )
        if endpoint.spec.routing_policy == routing.RoutingPolicy.CACHE_AWARE:
            policy = self._cache_aware.get(endpoint.id)
            if policy is None:
                if len(self._cache_aware) >= MAX_CACHE_AWARE:  # the oldest goes: bounded
                    del self._cache_aware[next(iter(self._cache_aware))]
                policy = self._cache_aware[endpoint.id] = routing.CacheAware()
            return policy.choose(targets, self._in_flight, prompt, self._chance)
        return routing.least_in_flight(targets, self._in_flight, self._chance)

    async def send(self, endpoint: Endpoint, path: str, body: bytes) -> UpstreamReply:
        """POST `body` to one of `endpoint`'s ready groups (the least busy).

        A group that is draining (scale-down, rollout, delete) refuses with a 503 of type
        `draining` before forwarding anything, so the request is safe to send again: it
        goes to another group, or (one target, such as a Kubernetes Service, which routes
        around the draining pod once its readiness fails) to the same one after a pause.
        """
        refused: set[str] = set()
        cache_aware = endpoint.spec.routing_policy == routing.RoutingPolicy.CACHE_AWARE
        prompt = routing.prompt_text_of(body) if cache_aware else ""  # parsed only if needed
        for attempt in range(DRAIN_RETRIES + 1):
            targets = self.backend.targets(endpoint) if self.backend is not None else []
            fresh = [t for t in targets if t not in refused]
            if not fresh and targets:
                await asyncio.sleep(DRAIN_PAUSE_S * 2**attempt)
            target = self.pick_target(endpoint, among=fresh or None, prompt=prompt)
            reply = await self.post(endpoint, target, path, body)
            if reply.status_code != 503:
                return reply
            content = await reply.read()
            if b'"draining"' not in content:
                return UpstreamReply(503, reply.content_type, _once(content))
            refused.add(target)
        raise ServiceUnavailable(
            f"endpoint {endpoint.name!r} is draining: every group tried takes no new requests "
            "(a scale-down, rollout or delete); retry"
        )

    async def post(self, endpoint: Endpoint, target: str, path: str, body: bytes) -> UpstreamReply:
        """POST `body` (JSON) to `endpoint`'s forwarder at `target`, with the endpoint's
        token; the reply's body streams until read or iterated."""
        headers = JSON_HEADERS
        if endpoint.forwarder_token:
            credential = b"Bearer " + endpoint.forwarder_token.encode()
            headers = [*JSON_HEADERS, (b"Authorization", credential)]
        self._in_flight[target] = self._in_flight.get(target, 0) + 1
        try:
            async with deadline(self.timeout_s):
                response = await self._pool(target).request("POST", path, headers, body)
        except BaseException as exc:  # cancelled (the client left) included
            self._in_flight[target] -= 1
            if isinstance(exc, TimeoutError):
                raise self._timed_out(target) from exc
            if isinstance(exc, httpx.TransportError):
                raise UpstreamFailed(f"upstream {target} failed: {exc}") from exc
            raise
        content_type = next(
            (v.decode("latin-1") for k, v in response.headers if k.lower() == b"content-type"),
            "application/json",
        )

        async def relay() -> AsyncIterator[bytes]:
            chunks = response.chunks()
            try:
                while True:
                    async with deadline(self.timeout_s):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        return
                    yield chunk
            except TimeoutError as exc:
                raise self._timed_out(target) from exc
            except httpx.TransportError as exc:
                raise UpstreamFailed(f"upstream {target} failed mid-answer: {exc}") from exc
            finally:
                await response.aclose()
                self._in_flight[target] -= 1

        return UpstreamReply(response.status, content_type, relay())

    def _timed_out(self, target: str) -> UpstreamTimeout:
        return UpstreamTimeout(f"upstream {target} did not answer within {self.timeout_s:g}s")

    def _pool(self, target: str) -> EnginePool:
        pool = self._pools.get(target)
        if pool is None:
            url = urlsplit(target)
            host = url.hostname or "127.0.0.1"
            pool = EnginePool(host, url.port or 80, connect_timeout=CONNECT_TIMEOUT_S)
            self._pools[target] = pool
        return pool


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
