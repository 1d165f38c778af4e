"""A rank >= 1 of a multi-node group: joins rank 0 and dies with it.

Started by `simulator.server` when `--node-rank` >= 1. `run()` returns only with the
reason this process must exit non-zero: rank 0 could not be reached before
`--dist-timeout`, it refused this rank, or it was lost afterwards (connection closed,
or no heartbeat within `--sim-rank-timeout-s`), since real SGLang workers die with
their leader.
"""

from __future__ import annotations

import asyncio
import logging

from llm_launch.simulator import wire
from llm_launch.simulator.args import DistAddr
from llm_launch.simulator.group import GroupShape, RendezvousTiming

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 0.25


class Worker:
    def __init__(
        self,
        addr: DistAddr,
        rank: int,
        shape: GroupShape,
        timing: RendezvousTiming,
    ) -> None:
        self._addr = addr
        self._rank = rank
        self._shape = shape
        self._timing = timing

    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timing.dist_timeout_s
        link = await self._connect(deadline)
        if isinstance(link, str):
            return link
        reader, writer = link
        hello = {
            "type": "hello",
            "rank": self._rank,
            "nnodes": self._shape.nnodes,
            "tp_size": self._shape.tp_size,
            "pp_size": self._shape.pp_size,
        }
        try:
            await wire.send(writer, hello)
            reply = await wire.receive(
                reader, max(deadline - loop.time(), self._timing.rank_timeout_s)
            )
        except wire.LinkLost as exc:
            await wire.close(writer)
            return f"rank {self._rank}: lost rank 0 at {self._addr} while joining: {exc}"
        if reply.get("type") != "welcome":
            await wire.close(writer)
            reason = reply.get("reason", f"unexpected reply {reply.get('type')!r}")
            return f"rank {self._rank}: rank 0 at {self._addr} refused to admit us: {reason}"
        log.info("rank %d: joined the group at %s", self._rank, self._addr)
        reason = await wire.keep_alive(
            reader,
            writer,
            heartbeat_s=self._timing.heartbeat_s,
            timeout_s=self._timing.rank_timeout_s,
        )
        return f"rank {self._rank}: lost rank 0 at {self._addr}: {reason}"

    async def _connect(
        self, deadline: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
        """Connect to rank 0, retrying until the deadline; a string says why it failed."""
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - loop.time()
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(self._addr.host, self._addr.port),
                    max(0.1, min(remaining, 5.0)),
                )
            except (OSError, TimeoutError) as exc:
                last_error = str(exc) or exc.__class__.__name__
            if attempts == 1:
                log.info("rank %d: waiting for rank 0 at %s", self._rank, self._addr)
            if loop.time() + RETRY_INTERVAL_S >= deadline:
                return (
                    f"rank {self._rank}: could not reach rank 0 at {self._addr} within "
                    f"{self._timing.dist_timeout_s:g}s ({attempts} attempts; "
                    f"last error: {last_error})"
                )
            await asyncio.sleep(RETRY_INTERVAL_S)
