"""Follow a local process's log file as `tail -F` would: its last lines, then every byte
written after, for `GET .../logs?follow=true` on the local backend.

A group's processes append to their log across restarts (each start is marked in it), so
the follow goes on through restarts; it ends when the file is removed or replaced (the
endpoint was deleted) or when the caller stops iterating (its client left). Reads run in
a thread, and an idle file is looked at again every POLL_S.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

POLL_S = 0.2
CHUNK_BYTES = 64 * 1024
TAIL_WINDOW_BYTES = 256 * 1024  # the last lines are looked for this far back at most


async def follow_file(path: Path, tail: int) -> AsyncIterator[bytes]:
    """The last `tail` lines of `path`, then what is appended to it, as it comes."""
    log = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(_seek_to_tail, log, tail)
        while True:
            chunk = await asyncio.to_thread(_read_more, log)
            if chunk:
                yield chunk
            elif not await asyncio.to_thread(_still_there, log, path):
                return
            else:
                await asyncio.sleep(POLL_S)
    finally:
        log.close()


def _seek_to_tail(log: BinaryIO, lines: int) -> None:
    size = log.seek(0, os.SEEK_END)
    start = max(0, size - TAIL_WINDOW_BYTES)
    log.seek(start)
    found = log.read(size - start).splitlines(keepends=True)
    if start > 0 and found:
        found = found[1:]  # the window began mid-line
    kept = found[-lines:] if lines > 0 else []
    log.seek(size - sum(len(line) for line in kept))


def _read_more(log: BinaryIO) -> bytes:
    if os.fstat(log.fileno()).st_size < log.tell():
        log.seek(0)  # truncated: what is there now is new
    return log.read(CHUNK_BYTES)


def _still_there(log: BinaryIO, path: Path) -> bool:
    """Whether `path` still names the file being read (not removed, not replaced)."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(log.fileno())
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)
