"""The rendezvous wire protocol: JSON objects, one per line, over a TCP connection.

Used by `simulator.leader` (rank 0) and `simulator.worker` (ranks >= 1). A worker sends
`{"type": "hello", "rank", "nnodes", "tp_size", "pp_size"}`; rank 0 answers
`{"type": "welcome"}` or `{"type": "reject", "reason"}`. After a welcome both sides
send `{"type": "heartbeat"}` every heartbeat interval, and each counts the other as lost
when the connection closes or nothing arrives within the rank timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024


class LinkLost(Exception):
    """The peer is gone; the message says how (one line)."""


async def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        raise LinkLost(f"connection broken ({exc.__class__.__name__})") from None


async def receive(reader: asyncio.StreamReader, timeout_s: float) -> dict[str, Any]:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except TimeoutError:
        raise LinkLost(f"no heartbeat for {timeout_s:g}s") from None
    except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError) as exc:
        raise LinkLost(f"connection broken ({exc.__class__.__name__})") from None
    if not line.endswith(b"\n"):
        raise LinkLost("connection closed")
    try:
        message = json.loads(line)
    except ValueError:
        raise LinkLost("sent a message that is not JSON") from None
    if not isinstance(message, dict):
        raise LinkLost("sent a message that is not a JSON object")
    return message


async def keep_alive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    heartbeat_s: float,
    timeout_s: float,
) -> str:
    """Heartbeat both ways until the peer is lost; return how it was lost. Closes the link."""

    async def beat() -> str:
        while True:
            await send(writer, {"type": "heartbeat"})
            await asyncio.sleep(heartbeat_s)

    async def listen() -> str:
        while True:
            await receive(reader, timeout_s)

    tasks = [asyncio.create_task(beat()), asyncio.create_task(listen())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        exc = next(iter(done)).exception()
        return str(exc) if isinstance(exc, LinkLost) else f"link failed: {exc!r}"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(writer)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
