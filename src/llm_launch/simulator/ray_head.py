"""The simulated Ray head: the cluster's registry of nodes, which vLLM's driver places on.

Run by `ray start --head ... --block` (`simulator.ray_cli`), which a simulated vLLM leader's
startup program runs before `vllm serve` (see `runtime/startup/engine_command.py`); worker nodes
(`ray start --address HEAD --block`) register here, and `vllm serve` and `ray status`
ask it which nodes are alive (`simulator.vllm`, `simulator.ray_cli`).

The head is a node too, with its own GPUs. A registered node heartbeats with the head
over `simulator.wire`; one that goes silent or closes its connection is marked dead (as
Ray's GCS marks a node whose raylet stopped), and stays listed so a driver sees what it
lost. A connection that says nothing and closes (a worker's startup program checking that
the head answers) is no event.

Messages, one JSON object per line: `{"type": "register-node", "node_ip", "num_gpus"}`
answered `{"type": "welcome", "node_id"}` then heartbeats; `{"type": "status"}` answered
`{"type": "status", "nodes": [{"node_id", "node_ip", "num_gpus", "alive", "lost"}]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import asdict, dataclass
from typing import Any

from llm_launch.simulator import wire
from llm_launch.simulator.args import DistAddr
from llm_launch.simulator.group import RendezvousTiming

log = logging.getLogger(__name__)


@dataclass
class RayNode:
    node_id: int
    node_ip: str
    num_gpus: int
    alive: bool = True
    lost: str | None = None  # how the head lost it


class RayHead:
    def __init__(self, addr: DistAddr, num_gpus: int, timing: RendezvousTiming) -> None:
        self._addr = addr
        self._timing = timing
        self.nodes = [RayNode(0, addr.host, num_gpus)]  # the head's own node

    def status(self) -> dict[str, Any]:
        return {"type": "status", "nodes": [asdict(node) for node in self.nodes]}

    async def run(self) -> None:
        """Serve until cancelled (the process is stopped)."""
        server = await self._listen()
        try:
            await asyncio.Event().wait()
        finally:
            server.close()

    async def _listen(self) -> asyncio.Server:
        host, port = self._addr.host, self._addr.port
        try:
            server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            # Not an address of this machine: all interfaces, as Ray's GCS listens anyway.
            if exc.errno not in (errno.EADDRNOTAVAIL, None) and not isinstance(
                exc, socket.gaierror
            ):
                raise
            server = await asyncio.start_server(self._handle, None, port)
        log.info("Ray head: listening at %s (%d GPUs on this node)", self._addr,
                 self.nodes[0].num_gpus)  # fmt: skip
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            await wire.close(writer)  # shutting down; see simulator.leader for why not raise

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            message = await wire.receive(reader, self._timing.rank_timeout_s)
        except wire.LinkLost:
            await wire.close(writer)  # a probe of the port, or a peer gone before a word
            return
        if message.get("type") == "status":
            await self._answer(writer, self.status())
        elif message.get("type") == "register-node":
            await self._register(message, reader, writer)
        else:
            await self._answer(writer, {"type": "reject", "reason": "unknown request"})

    async def _answer(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        with contextlib.suppress(wire.LinkLost):
            await wire.send(writer, message)
        await wire.close(writer)

    async def _register(
        self, hello: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        node = RayNode(len(self.nodes), str(hello.get("node_ip")), int(hello.get("num_gpus", 0)))
        self.nodes.append(node)
        try:
            await wire.send(writer, {"type": "welcome", "node_id": node.node_id})
        except wire.LinkLost as exc:
            self._lose(node, str(exc))
            await wire.close(writer)
            return
        log.info("Ray head: node %d joined from %s with %d GPUs (%d GPUs alive in the cluster)",
                 node.node_id, node.node_ip, node.num_gpus, alive_gpus(self.nodes))  # fmt: skip
        reason = await wire.keep_alive(
            reader,
            writer,
            heartbeat_s=self._timing.heartbeat_s,
            timeout_s=self._timing.rank_timeout_s,
        )
        self._lose(node, reason)

    def _lose(self, node: RayNode, reason: str) -> None:
        node.alive, node.lost = False, reason
        log.error("Ray head: node %d at %s is dead: %s", node.node_id, node.node_ip, reason)


def alive_gpus(nodes: list[RayNode]) -> int:
    return sum(node.num_gpus for node in nodes if node.alive)
