"""Rank 0 of a multi-node group: hosts the rendezvous and watches every other rank.

Started by `simulator.server` when `--nnodes > 1` and `--node-rank 0`; read by the HTTP
side through the `GroupStatus` methods (`problem`, `describe`).

Listening address: the host of `--dist-init-addr` when it is an address of this machine
(the usual case: the leader pod's own IP, or loopback in tests). When it is not (for
example a Service name that resolves elsewhere), rank 0 listens on all interfaces at
that port instead and logs so, as torch.distributed's store does.

States: FORMING (waiting for ranks 1..n-1, up to `--dist-timeout`), FORMED, and BROKEN
(a rank was lost: connection closed or no heartbeat). BROKEN is final: generation
answers 503 naming the lost rank, and a rank that comes back is refused, because a
real group must be restarted as a whole. Rank 0 keeps running when broken (as real
SGLang's rank 0 may); it exits only when the group never forms in time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from enum import StrEnum
from typing import Any

from llm_launch.simulator import wire
from llm_launch.simulator.args import DistAddr
from llm_launch.simulator.group import GroupShape, RendezvousTiming

log = logging.getLogger(__name__)


class GroupState(StrEnum):
    FORMING = "forming"
    FORMED = "formed"
    BROKEN = "broken"


def admission_problem(
    hello: dict[str, Any], shape: GroupShape, joined: set[int], state: GroupState
) -> str | None:
    """Why rank 0 must refuse this hello, or None to admit it. Pure."""
    if hello.get("type") != "hello":
        return f"expected a hello, got {hello.get('type')!r}"
    rank = hello.get("rank")
    if not isinstance(rank, int) or isinstance(rank, bool):
        return "hello without an integer rank"
    if state is not GroupState.FORMING:
        return (
            f"rank {rank} cannot join: the group is already {state.value}; restart the whole group"
        )
    for field in ("nnodes", "tp_size", "pp_size"):
        theirs, ours = hello.get(field), getattr(shape, field)
        if theirs != ours:
            return f"rank {rank} has {field}={theirs}, rank 0 has {field}={ours}"
    if not 1 <= rank < shape.nnodes:
        return f"rank {rank} is out of range: ranks >= 1 must be in [1, {shape.nnodes - 1}]"
    if rank in joined:
        return f"rank {rank} has already joined (duplicate --node-rank)"
    return None


class Leader:
    def __init__(
        self,
        addr: DistAddr,
        shape: GroupShape,
        timing: RendezvousTiming,
    ) -> None:
        self._addr = addr
        self._shape = shape
        self._timing = timing
        self._state = GroupState.FORMING
        self._joined: dict[int, str] = {}  # rank -> peer address
        self._problem: str | None = None
        self._settled = asyncio.Event()  # formed or broken

    # GroupStatus

    def problem(self) -> str | None:
        if self._state is GroupState.FORMING:
            return f"group not formed: waiting for {_ranks(self._missing())} to join"
        return self._problem

    def describe(self) -> dict[str, Any]:
        return {
            "nnodes": self._shape.nnodes,
            "state": self._state.value,
            "dist_init_addr": str(self._addr),
            "joined_ranks": [0, *sorted(self._joined)],
            "problem": self.problem(),
        }

    # Running

    async def run(self) -> str:
        """Serve the rendezvous. Returns a reason to exit only if the group never formed."""
        server = await self._listen()
        try:
            try:
                await asyncio.wait_for(self._settled.wait(), self._timing.dist_timeout_s)
            except TimeoutError:
                return (
                    f"group did not form within {self._timing.dist_timeout_s:g}s: "
                    f"{_ranks(self._missing())} never joined {self._addr}"
                )
            await asyncio.Event().wait()  # formed or broken: serve (and refuse) for good
            raise AssertionError("unreachable")
        finally:
            server.close()

    async def _listen(self) -> asyncio.Server:
        host, port = self._addr.host, self._addr.port
        try:
            server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, None) and not isinstance(
                exc, socket.gaierror
            ):
                raise
            log.warning(
                "%s is not an address of this machine (%s); listening on all interfaces, port %d",
                host,
                exc,
                port,
            )
            server = await asyncio.start_server(self._handle, None, port)
        log.info(
            "rank 0: rendezvous listening at %s for %d other rank(s), %gs to form",
            self._addr,
            self._shape.nnodes - 1,
            self._timing.dist_timeout_s,
        )
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_rank(reader, writer)
        except asyncio.CancelledError:
            # Shutting down. asyncio (3.11) logs a cancelled connection task as an
            # unhandled error, so this task, which nothing awaits, ends normally instead.
            await wire.close(writer)

    async def _serve_rank(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            hello = await wire.receive(reader, self._timing.rank_timeout_s)
        except wire.LinkLost:
            # Closed without a word: a worker's startup program checking that the
            # rendezvous port answers before it starts its engine. Not a rank.
            log.debug("rank 0: %s connected and left without a hello", peer)
            await wire.close(writer)
            return
        try:
            refusal = admission_problem(hello, self._shape, set(self._joined), self._state)
            if refusal is not None:
                log.warning("rank 0: refused %s: %s", peer, refusal)
                await wire.send(writer, {"type": "reject", "reason": refusal})
                await wire.close(writer)
                return
            rank: int = hello["rank"]
            self._joined[rank] = peer  # claimed now, so a duplicate arriving meanwhile is refused
            try:
                await wire.send(writer, {"type": "welcome"})
            except wire.LinkLost:
                del self._joined[rank]
                raise
        except wire.LinkLost as exc:
            log.warning("rank 0: connection from %s dropped before joining: %s", peer, exc)
            await wire.close(writer)
            return
        log.info("rank 0: rank %d joined from %s", rank, peer)
        self._check_formed()
        reason = await wire.keep_alive(
            reader,
            writer,
            heartbeat_s=self._timing.heartbeat_s,
            timeout_s=self._timing.rank_timeout_s,
        )
        self._lose(rank, reason)

    def _check_formed(self) -> None:
        if self._state is GroupState.FORMING and not self._missing():
            self._state = GroupState.FORMED
            self._settled.set()
            log.info("rank 0: group formed: all %d ranks joined", self._shape.nnodes)

    def _lose(self, rank: int, reason: str) -> None:
        if self._state is GroupState.BROKEN:
            log.error("rank 0: rank %d lost too: %s", rank, reason)
            return
        self._state = GroupState.BROKEN
        self._problem = f"rank {rank} lost: {reason}; the group must be restarted as a whole"
        self._settled.set()
        log.error("rank 0: %s", self._problem)

    def _missing(self) -> list[int]:
        return [r for r in range(1, self._shape.nnodes) if r not in self._joined]


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    return "ranks " + ", ".join(str(r) for r in ranks)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)
