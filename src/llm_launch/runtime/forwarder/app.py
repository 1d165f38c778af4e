"""The forwarder's ASGI app: Launch's routes and OpenAI pass-through, in front of one engine.

Called by uvicorn (`runtime.forwarder.main`, port 5000 beside the engine on a group's
leader), which the control plane's inference routes and the readiness probes reach; its
next hop is the engine (`--engine-url`, port 5005) through one `EngineClient`
(`runtime.forwarder.client`): the pooled `EnginePool` in production, any injected
`httpx` transport (`httpx.MockTransport` in unit tests) otherwise.

Every inference request passes through here, so this is a raw ASGI app: a dict lookup
routes, handlers are plain coroutines, nothing hops to a thread, nothing logs per
request, and streamed chunks go to the client as they arrive. Errors map to HTTP in one
place (`as_http_error`): 422 invalid request, 429 saturated, 502 engine unreachable.

Draining (a group's preStop hooks, `runtime.forwarder.drain`): `POST /drain` (the token, from
loopback only) stops new inference requests (503) and fails `/readyz`, so Services stop
routing here, while requests in flight, streams included, finish; `GET /drained` says
when none is left. `GET /livez` is the engine's generation check alone, which a draining
forwarder still answers truthfully (a liveness probe must not restart a draining group).

While the engine is not ready, `/readyz` also carries the leader's startup report
(`--progress-file`, written by the startup program beside it: `domain.progress`), so
whoever probes sees how far the group's start got.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from llm_launch.domain.progress import StartupProgress
from llm_launch.runtime.client_watch import ClientWatch
from llm_launch.runtime.forwarder.asgi import (
    HOP_BY_HOP,
    SSE_HEADERS,
    ForwarderError,
    Receive,
    Scope,
    Send,
    as_http_error,
    engine_answered,
    is_event_stream,
    not_allowed,
    not_found,
    read_body,
    relay_launch_stream,
    relay_raw_stream,
    respond,
    respond_error,
    respond_json,
    respond_unauthorized,
    saturated,
)
from llm_launch.runtime.forwarder.client import EngineClient, HttpxEngineClient
from llm_launch.runtime.forwarder.engines import EngineApiName, engine_api
from llm_launch.runtime.forwarder.ready import ReadinessCheck
from llm_launch.runtime.forwarder.transport import EnginePool
from llm_launch.runtime.launch_api import (
    EngineBodyError,
    InvalidRequest,
    loads,
    parse_completion_request,
    sync_response,
)

__all__ = ["ForwarderApp", "ForwarderConfig", "create_app"]

Handler = Callable[[Scope, bytes, Send], Awaitable[None]]
# The endpoint's token is for this hop only: the engine never sees it.
NOT_PASSED_ON = HOP_BY_HOP | {b"authorization"}


@dataclass(frozen=True)
class ForwarderConfig:
    engine_url: str
    engine_api: EngineApiName = "sglang"
    served_model_name: str | None = None
    max_concurrency: int = 256
    ready_check_path: str | None = None
    ready_cache_s: float = 1.0
    ready_timeout_s: float = 4.0
    connect_timeout_s: float = 3.0
    progress_file: str | None = None  # the leader's startup report, served while not ready
    # The endpoint's secret: inference routes answer only `Authorization: Bearer <token>`.
    # None (the CLI's explicit --no-token) answers anyone; the probes and /metrics never
    # ask for it.
    token: str | None = field(default=None, repr=False)


def engine_pool(config: ForwarderConfig) -> EnginePool:
    url = urlsplit(config.engine_url)
    if url.scheme != "http" or not url.hostname or url.path.strip("/"):
        raise ValueError(f"--engine-url must be http://HOST:PORT, got {config.engine_url!r}")
    return EnginePool(
        url.hostname,
        url.port or 80,
        connect_timeout=config.connect_timeout_s,
        max_idle=config.max_concurrency + 8,
    )


class ForwarderApp:
    """The ASGI application, talking to the engine through `client`."""

    def __init__(self, config: ForwarderConfig, client: EngineClient) -> None:
        self.config = config
        self._client = client
        self._api = engine_api(
            config.engine_api,
            served_model_name=config.served_model_name,
            ready_check_path=config.ready_check_path,
        )
        self.readiness = ReadinessCheck(
            self._client,
            self._api.readiness_request,
            cache_s=config.ready_cache_s,
            timeout_s=config.ready_timeout_s,
        )
        self._max = config.max_concurrency
        self._credential = None if config.token is None else b"Bearer " + config.token.encode()
        self.in_flight = 0
        self.draining = False  # set once by POST /drain; a draining group never serves again
        self.admitted_total = 0
        self.rejected_total = 0
        self._plain: dict[str, tuple[str, Callable[[Send], Awaitable[None]]]] = {
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
            "/livez": ("GET", self._livez),
            "/drained": ("GET", self._drained),
            "/metrics": ("GET", self._metrics),
        }
        self._limited: dict[str, tuple[str, Handler]] = {
            "/predict": ("POST", self._predict),
            "/stream": ("POST", self._stream),
            "/v1/completions": ("POST", self._pass_through),
            "/v1/chat/completions": ("POST", self._pass_through),
            "/v1/models": ("GET", self._pass_through),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/drain":
            return await self._drain(scope, send)
        route = self._limited.get(path)
        if route is None:
            plain = self._plain.get(path)
            if plain is None:
                return await respond_error(send, not_found(scope))
            if scope["method"] != plain[0]:
                return await respond_error(send, not_allowed(scope, plain[0]))
            return await plain[1](send)
        if self._credential is not None and not self._authorized(scope):
            return await respond_unauthorized(send)
        if scope["method"] != route[0]:
            return await respond_error(send, not_allowed(scope, route[0]))
        if self.draining:
            return await respond_error(send, draining_error())
        if self.in_flight >= self._max:
            self.rejected_total += 1
            return await respond_error(send, saturated(self._max))
        self.in_flight += 1
        self.admitted_total += 1
        try:
            await self._serve(route[1], scope, receive, send)
        finally:
            self.in_flight -= 1

    def _authorized(self, scope: Scope) -> bool:
        """Whether the request carries this endpoint's token (compared in constant time)."""
        assert self._credential is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._credential)
        return False

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Run an inference handler; a client that leaves cancels it (closing the engine's
        connection, so the engine stops generating), and errors map to HTTP here, once."""
        body = await read_body(receive)
        if body is None:
            return  # the client left before its request was complete
        cycle = ClientWatch(receive, send)
        try:
            try:
                await handler(scope, body, cycle.send)
            except (ForwarderError, InvalidRequest, httpx.TransportError, EngineBodyError) as exc:
                await respond_error(cycle.send, as_http_error(exc))
        except asyncio.CancelledError:
            if not cycle.disconnected:
                raise
            cycle.task.uncancel()
        finally:
            cycle.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- probes -------------------------------------------------------------------------

    async def _healthz(self, send: Send) -> None:
        await respond_json(send, 200, {"status": "ok"})

    async def _readyz(self, send: Send) -> None:
        if self.draining:
            body = {"ready": False, "reason": "draining: taking no new requests",
                    "engine_status": None, "in_flight": self.in_flight}  # fmt: skip
            return await respond_json(send, 503, body)
        readiness = await self.readiness.check()
        body = readiness.body()
        if not readiness.ready and (report := self._startup_report()) is not None:
            body["startup"] = asdict(report)
        await respond_json(send, 200 if readiness.ready else 503, body)

    def _startup_report(self) -> StartupProgress | None:
        """The startup program's latest report (a few hundred bytes, replaced atomically)."""
        if self.config.progress_file is None:
            return None
        try:
            text = Path(self.config.progress_file).read_text()
        except OSError:
            return None  # none written yet
        return StartupProgress.from_json(text)

    async def _livez(self, send: Send) -> None:
        """The engine's generation check alone (the liveness probe of vLLM leaders, which
        have no generation route of their own), whether or not this forwarder drains."""
        readiness = await self.readiness.check()
        await respond_json(send, 200 if readiness.ready else 503, readiness.body())

    # --- draining (the preStop hooks, runtime.forwarder.drain) ---------------------------

    async def _drain(self, scope: Scope, send: Send) -> None:
        if scope["method"] != "POST":
            return await respond_error(send, not_allowed(scope, "POST"))
        client = scope.get("client")
        if not client or not _is_loopback(client[0]):
            # The hook runs inside the pod (or, locally, on this machine): nobody on the
            # pod network may take a group out of service, even with the token.
            message = "POST /drain is accepted from loopback only (the group's preStop hook)"
            return await respond_error(send, ForwarderError(403, "forbidden", message))
        if self._credential is not None and not self._authorized(scope):
            return await respond_unauthorized(send)
        self.draining = True
        await respond_json(send, 200, {"draining": True, "in_flight": self.in_flight})

    async def _drained(self, send: Send) -> None:
        """Open and read-only: 200 once draining with nothing in flight, else 503."""
        drained = self.draining and self.in_flight == 0
        body = {"drained": drained, "draining": self.draining, "in_flight": self.in_flight}
        await respond_json(send, 200 if drained else 503, body)

    async def _metrics(self, send: Send) -> None:
        """Prometheus text. `llm_launch_requests_in_flight` is what the Kubernetes
        backend's HorizontalPodAutoscaler targets (per_worker requests per group)."""
        text = (
            "# HELP llm_launch_requests_in_flight Inference requests being served now.\n"
            "# TYPE llm_launch_requests_in_flight gauge\n"
            f"llm_launch_requests_in_flight {self.in_flight}\n"
            "# HELP llm_launch_requests_total Inference requests admitted.\n"
            "# TYPE llm_launch_requests_total counter\n"
            f"llm_launch_requests_total {self.admitted_total}\n"
            "# HELP llm_launch_requests_rejected_total Requests refused with 429 (saturated).\n"
            "# TYPE llm_launch_requests_rejected_total counter\n"
            f"llm_launch_requests_rejected_total {self.rejected_total}\n"
        )
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await respond(send, 200, headers, text.encode())

    # --- Launch routes ------------------------------------------------------------------

    async def _predict(self, scope: Scope, body: bytes, send: Send) -> None:
        request = parse_completion_request(body)
        request_id = _request_id(scope)
        response = await self._client.request(*self._api.generate(request, stream=False))
        try:
            content = await response.read()
        finally:
            await response.aclose()
        if response.status != 200:
            raise engine_answered(response.status, content)
        output = self._api.output(_json(content), with_tokens=request.return_token_log_probs)
        await respond_json(send, 200, sync_response(request_id, output), request_id)

    async def _stream(self, scope: Scope, body: bytes, send: Send) -> None:
        request = parse_completion_request(body)
        request_id = _request_id(scope)
        response = await self._client.request(*self._api.generate(request, stream=True))
        try:
            if response.status != 200:
                raise engine_answered(response.status, await response.read())
            headers = [*SSE_HEADERS, (b"x-request-id", request_id.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            mapper = self._api.stream(with_tokens=request.return_token_log_probs)
            await relay_launch_stream(response, mapper, request_id, send)
        finally:
            await response.aclose()

    # --- OpenAI pass-through ------------------------------------------------------------

    async def _pass_through(self, scope: Scope, body: bytes, send: Send) -> None:
        target = scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in NOT_PASSED_ON]
        response = await self._client.request(scope["method"], target, headers, body)
        try:
            headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
            if is_event_stream(headers):
                start = {"type": "http.response.start", "status": response.status}
                await send({**start, "headers": headers})
                await relay_raw_stream(response, send)
            else:
                content = await response.read()
                headers.append((b"content-length", b"%d" % len(content)))
                await respond(send, response.status, headers, content)
        finally:
            await response.aclose()


def create_app(
    config: ForwarderConfig, transport: httpx.AsyncBaseTransport | None = None
) -> ForwarderApp:
    """The app, with the pooled engine client, or one over `transport` (tests)."""
    if transport is None:
        return ForwarderApp(config, engine_pool(config))
    return ForwarderApp(config, HttpxEngineClient(transport, config.engine_url))


def draining_error() -> ForwarderError:
    message = "this group is draining (scale-down, rollout or delete) and takes no new requests"
    return ForwarderError(503, "draining", message)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees 127.0.0.1 as ::ffff:...
    return address.is_loopback


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and value:
            return str(value.decode("latin-1"))
    return os.urandom(16).hex()


def _json(content: bytes) -> Any:
    try:
        return loads(content)
    except ValueError as exc:
        raise EngineBodyError(f"engine answered a body that is not JSON: {exc}") from None
