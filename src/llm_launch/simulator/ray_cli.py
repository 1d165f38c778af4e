"""`python -m llm_launch.simulator ray ...`: the simulated `ray` command of a vLLM group.

A simulated vLLM multi-node group runs the plan's own commands (`runtime/startup/engine_command.py`)
with `ray` replaced by this:
- `ray start --head --port P --node-ip-address IP [--block]`: the head (`simulator.ray_head`).
  Without `--block` it starts the head as a background process and returns once the head
  answers, as Ray's does (the head stays in the caller's process group, so whatever stops
  the group stops it too);
- `ray start --address HEAD --node-ip-address IP --block`: a worker node; it registers its
  GPUs with the head and heartbeats, and exits 1 when it loses the head, as a real worker's
  `ray start --block` ends when its raylet dies;
- `ray status --address HEAD`: the cluster's nodes on stderr, and the number of live nodes
  alone on the last line of stdout (what the startup program counts while it waits).

A node's GPUs: `--num-gpus`, else $LLM_LAUNCH_SIM_NUM_GPUS (the startup program sets the
plan's GPUs per node), else 1. Exit status: 2 for bad flags, 1 when the node fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_launch.simulator import wire
from llm_launch.simulator.args import ArgsError, DistAddr, _Parser, parse_dist_init_addr
from llm_launch.simulator.group import RendezvousTiming
from llm_launch.simulator.ray_head import RayHead

log = logging.getLogger("llm_launch.simulator.ray")

SIM_GPUS_ENV = "LLM_LAUNCH_SIM_NUM_GPUS"
HEAD_START_TIMEOUT_S = 30.0
RETRY_INTERVAL_S = 0.25


@dataclass(frozen=True)
class RayStart:
    head: bool
    address: DistAddr | None  # the head, for a worker node
    port: int
    node_ip: str
    block: bool
    num_gpus: int
    timing: RendezvousTiming  # dist_timeout_s: how long a worker node tries to reach the head


def main(argv: Sequence[str]) -> int:
    command, rest = (argv[0], list(argv[1:])) if argv else ("", [])
    try:
        if command == "start":
            return start(parse_start(rest), rest)
        if command == "status":
            return status(_status_address(rest))
        raise ArgsError(
            f"ray {command or '(nothing)'}: the simulator has `ray start` and `ray status`"
        )
    except ArgsError as exc:
        print(f"llm_launch.simulator ray: error: {exc}", file=sys.stderr)
        return 2


def parse_start(argv: Sequence[str], env: Mapping[str, str] | None = None) -> RayStart:
    env = os.environ if env is None else env
    parser = _Parser(prog="python -m llm_launch.simulator ray start", allow_abbrev=False,
                     exit_on_error=False)  # fmt: skip
    add = parser.add_argument
    add("--head", action="store_true")
    add("--address", default=None)
    add("--port", type=int, default=6379)
    add("--node-ip-address", default="127.0.0.1")
    add("--block", action="store_true")
    add("--num-gpus", type=int, default=None)
    add("--sim-heartbeat-s", type=float, default=1.0)
    add("--sim-rank-timeout-s", type=float, default=5.0)
    add("--sim-connect-timeout-s", type=float, default=60.0)
    try:
        ns, _ignored = parser.parse_known_args(list(argv))  # Ray's other flags change nothing
    except argparse.ArgumentError as exc:
        raise ArgsError(str(exc)) from None
    if ns.head == (ns.address is not None):
        raise ArgsError("give either --head or --address HEAD_HOST:PORT")
    if ns.address is not None and not ns.block:
        raise ArgsError("the simulator runs a worker node with --block only")
    gpus = ns.num_gpus if ns.num_gpus is not None else int(env.get(SIM_GPUS_ENV) or 1)
    timing = RendezvousTiming(ns.sim_connect_timeout_s, ns.sim_heartbeat_s, ns.sim_rank_timeout_s)
    address = parse_dist_init_addr(ns.address) if ns.address else None
    return RayStart(ns.head, address, ns.port, ns.node_ip_address, ns.block, gpus, timing)


def start(args: RayStart, argv: Sequence[str]) -> int:
    _configure_logging("ray head" if args.head else "ray node")
    if args.head and not args.block:
        return _start_head_in_background(args, argv)
    if args.head:
        head = RayHead(DistAddr(args.node_ip, args.port), args.num_gpus, args.timing)
        asyncio.run(head.run())
        return 0
    assert args.address is not None
    reason = asyncio.run(join(args.address, args.node_ip, args.num_gpus, args.timing))
    log.critical("exiting: %s", reason)
    return 1


def _start_head_in_background(args: RayStart, argv: Sequence[str]) -> int:
    """Start `ray start ... --block` as a background process; return once it answers."""
    command = [sys.executable, "-m", "llm_launch.simulator", "ray", "start", *argv, "--block"]
    head = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.poll() is not None:
            log.critical("the Ray head exited with status %d before it answered", head.returncode)
            return 1
        try:
            socket.create_connection((args.node_ip, args.port), timeout=1.0).close()
        except OSError:
            time.sleep(RETRY_INTERVAL_S)
            continue
        print(f"Ray runtime started (SIMULATED head at {DistAddr(args.node_ip, args.port)}, "
              f"pid {head.pid}).", flush=True)  # fmt: skip
        return 0
    head.kill()
    log.critical("the Ray head did not answer within %gs", HEAD_START_TIMEOUT_S)
    return 1


async def join(head: DistAddr, node_ip: str, num_gpus: int, timing: RendezvousTiming) -> str:
    """Register this node with the head, then heartbeat; returns how the head was lost."""
    link = await _connect(head, timing.dist_timeout_s)
    if isinstance(link, str):
        return link
    reader, writer = link
    try:
        await wire.send(writer, {"type": "register-node", "node_ip": node_ip, "num_gpus": num_gpus})
        reply = await wire.receive(reader, timing.rank_timeout_s)
    except wire.LinkLost as exc:
        await wire.close(writer)
        return f"lost the Ray head at {head} while joining: {exc}"
    if reply.get("type") != "welcome":
        await wire.close(writer)
        return f"the Ray head at {head} refused this node: {reply.get('reason')}"
    log.info("joined the Ray cluster at %s as node %s with %d GPUs", head, reply.get("node_id"),
             num_gpus)  # fmt: skip
    reason = await wire.keep_alive(
        reader, writer, heartbeat_s=timing.heartbeat_s, timeout_s=timing.rank_timeout_s
    )
    return f"lost the Ray head at {head}: {reason}"


async def _connect(
    head: DistAddr, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await asyncio.wait_for(asyncio.open_connection(head.host, head.port), 5.0)
        except (OSError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        if loop.time() + RETRY_INTERVAL_S >= deadline:
            return f"could not reach the Ray head at {head} within {timeout_s:g}s ({error})"
        await asyncio.sleep(RETRY_INTERVAL_S)


def _status_address(argv: Sequence[str]) -> DistAddr:
    parser = _Parser(prog="python -m llm_launch.simulator ray status", exit_on_error=False)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    try:
        ns, _ignored = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ArgsError(str(exc)) from None
    if not ns.address:
        raise ArgsError("--address HEAD_HOST:PORT (or RAY_ADDRESS) is required")
    return parse_dist_init_addr(ns.address)


def status(head: DistAddr) -> int:
    try:
        nodes = asyncio.run(cluster_nodes(head, timeout_s=5.0))
    except (OSError, TimeoutError, wire.LinkLost) as exc:
        print(f"could not reach the Ray head at {head}: {exc}", file=sys.stderr)
        return 1
    for node in nodes:
        state = "alive" if node["alive"] else f"dead ({node['lost']})"
        print(f"node {node['node_id']} at {node['node_ip']}: {node['num_gpus']} GPUs, {state}",
              file=sys.stderr)  # fmt: skip
    print(sum(1 for node in nodes if node["alive"]))
    return 0


async def cluster_nodes(head: DistAddr, timeout_s: float) -> list[dict[str, Any]]:
    """The head's list of nodes (dead ones included)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(head.host, head.port), timeout_s
    )
    try:
        await wire.send(writer, {"type": "status"})
        reply = await wire.receive(reader, timeout_s)
    finally:
        await wire.close(writer)
    nodes: list[dict[str, Any]] = reply.get("nodes", [])
    return nodes


def _configure_logging(role: str) -> None:
    logging.basicConfig(
        level="INFO",
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [SIMULATED {role}] %(name)s: %(message)s",
    )
