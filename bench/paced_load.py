"""An open-loop HTTP load at a fixed request rate, for latency percentiles up to p99.9.

A closed loop (wrk: each connection sends its next request when the last one answered)
hides a server stall: the requests that would have arrived during it are never sent, so
one stall is one slow sample. Here request i is due at start + i / rate whatever happened
before it, and its latency counts from that moment (as wrk2 does), so a stall costs every
request due meanwhile, as it would cost real clients arriving at that rate.

Raw asyncio streams on keep-alive connections (a pool that grows while answers are slow)
on uvloop (uvicorn's): the client's own cost stays far below the server's at the moderate
rates this is meant for. Used by bench/gateway_scaling.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

__all__ = ["Paced", "paced_load"]

MAX_CONNECTIONS = 512  # beyond this, due requests wait for a connection (and count it)


@dataclass
class Paced:
    """What one paced run measured."""

    latencies_ms: list[float] = field(default_factory=list)  # answered 200, from due time
    errors: Counter[str] = field(default_factory=Counter)  # why, for each request not 200
    retried: int = 0  # sent again: a kept-alive connection the server had closed meanwhile
    behind_ms: float = 0.0  # how far the client itself fell behind its schedule, at most


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
FAILURES = (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError)  # fmt: skip


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []
        self.open = 0
        self.freed = asyncio.Condition()

    async def take(self, fresh: bool) -> tuple[Connection, bool]:
        """A connection, and whether it served a request before (kept alive)."""
        async with self.freed:
            while (fresh or not self.idle) and self.open >= MAX_CONNECTIONS:
                await self.freed.wait()
            if self.idle and not fresh:
                return self.idle.pop(), True
            self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port), False
        except OSError:
            await self.drop(None)
            raise

    async def give(self, connection: Connection) -> None:
        async with self.freed:
            self.idle.append(connection)
            self.freed.notify()

    async def drop(self, writer: asyncio.StreamWriter | None) -> None:
        if writer is not None:
            writer.close()
        async with self.freed:
            self.open -= 1
            self.freed.notify()


class _Unanswered(Exception):
    """The connection failed before any byte of an answer: the server closed it idle."""


async def _exchange(connection: Connection, request: bytes) -> int:
    """Send `request`, read the whole answer; its status."""
    reader, writer = connection
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError) as exc:
        if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
            raise
        raise _Unanswered(repr(exc)) from exc
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        None,
    )  # fmt: skip
    if length is None:  # the routes measured answer with a length, never chunked
        raise ValueError(f"no content-length in {head[:200]!r}")
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _one(pool: _Pool, request: bytes, due: float, timeout_s: float, result: Paced) -> None:
    """One request, sent again once on a new connection if a kept-alive one turns out to
    have been closed by the server (as any HTTP client does); its latency from `due`."""
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            for fresh in (False, True):
                connection, reused = await pool.take(fresh)
                writer = connection[1]
                try:
                    status = await _exchange(connection, request)
                    break
                except _Unanswered:
                    if not reused:
                        raise
                    await pool.drop(writer)
                    writer = None
                    result.retried += 1
    except (*FAILURES, _Unanswered) as exc:
        result.errors[type(exc).__name__] += 1
        if writer is not None:
            await pool.drop(writer)
        return
    latency = (time.perf_counter() - due) * 1000
    await pool.give(connection)
    if status == 200:
        result.latencies_ms.append(latency)
    else:
        result.errors[f"HTTP {status}"] += 1


async def _run(
    url: str, body: bytes, headers: dict[str, str], rate: float, duration_s: float, timeout_s: float
) -> Paced:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    result = Paced()
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * duration_s)):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            result.behind_ms = max(result.behind_ms, -wait * 1000)
        tasks.append(asyncio.create_task(_one(pool, request, due, timeout_s, result)))
    await asyncio.gather(*tasks)
    for _, writer in pool.idle:
        writer.close()
    return result


def paced_load(
    url: str,
    body: str,
    headers: dict[str, str],
    *,
    rate: float,
    duration_s: float,
    timeout_s: float = 10.0,
) -> Paced:
    """POST `body` to `url` at `rate` requests a second for `duration_s` seconds."""
    return uvloop.run(_run(url, body.encode(), headers, rate, duration_s, timeout_s))
