"""`python -m llm_launch.simulator vllm serve MODEL ...`: the simulated vLLM server.

A simulated vLLM endpoint runs its plan's own argv (`runtime/startup/engine_command.py`) with
`vllm` replaced by this. The flags are vLLM's: the model is positional (or `--model`),
`--tensor-parallel-size` (`-tp`), `--pipeline-parallel-size` (`-pp`),
`--distributed-executor-backend`, `--max-model-len` (the context length), `--host`,
`--port`, `--served-model-name`, `--quantization`, `--chat-template`; the simulator's
`--sim-*` flags as in `simulator.args`; any other flag is accepted and ignored.

With `--distributed-executor-backend ray` it places its tp x pp workers on the Ray cluster
at $RAY_ADDRESS (the simulated head, `simulator.ray_head`), as vLLM's placement group
does: it serves no HTTP until the cluster's live GPUs cover tp x pp (at most
`--sim-placement-timeout-s`, then exit 1 naming what is missing), and once serving, it
exits 1 when a node it was placed on dies or the head is lost, as vLLM's engine dies with
its Ray workers. Otherwise it serves at once, one node. The HTTP API is the simulator's
(`simulator.app`), OpenAI routes included.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_launch.simulator import wire
from llm_launch.simulator.app import build_app
from llm_launch.simulator.args import (
    DEFAULT_TPOT_MS,
    DEFAULT_TTFT_MS,
    ENV_TPOT_MS,
    ENV_TTFT_MS,
    ArgsError,
    DistAddr,
    SimArgs,
    _env_ms,
    _Parser,
    add_prefix_cache_flags,
    parse_dist_init_addr,
    validation_problems,
)
from llm_launch.simulator.group import RendezvousTiming, SingleNode
from llm_launch.simulator.ray_cli import cluster_nodes
from llm_launch.simulator.server import (
    EXIT_BAD_FLAGS,
    EXIT_GROUP_FAILED,
    announce,
    configure_logging,
    loop_factory,
    serve_app,
)

log = logging.getLogger("llm_launch.simulator.vllm")

WAIT_LOG_S = 10.0  # how often a placement still waiting says so, as vLLM does


@dataclass(frozen=True)
class VllmArgs:
    sim: SimArgs
    executor: str | None  # --distributed-executor-backend
    ray_head: DistAddr | None  # $RAY_ADDRESS, with the ray executor

    @property
    def world_size(self) -> int:
        return self.sim.tp_size * self.sim.pp_size


def main(argv: Sequence[str]) -> int:
    try:
        args = parse_vllm_args(argv)
    except ArgsError as exc:
        print(f"llm_launch.simulator vllm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    configure_logging(args.sim, role="vllm")
    where = f"workers on the Ray cluster at {args.ray_head}" if args.ray_head else "one node"
    announce(args.sim, engine="vLLM", where=where)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve_vllm(args))


def parse_vllm_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> VllmArgs:
    env = os.environ if env is None else env
    if not argv or argv[0] != "serve":
        raise ArgsError("the simulator runs `vllm serve MODEL [flags]` only")
    try:
        ns, ignored = _parser(env).parse_known_args(list(argv[1:]))
    except argparse.ArgumentError as exc:
        raise ArgsError(str(exc)) from None
    model = ns.model_tag or ns.model
    if not model:
        raise ArgsError("no model: give it as `vllm serve MODEL` or --model")
    sim = SimArgs(
        model_path=model,
        served_model_name=ns.served_model_name[0] if ns.served_model_name else model,
        tp_size=ns.tensor_parallel_size,
        pp_size=ns.pipeline_parallel_size,
        nnodes=1,  # vLLM has no such flag: Ray decides where its workers run
        node_rank=0,
        dist_init_addr=None,
        host=ns.host,
        port=ns.port,
        trust_remote_code=ns.trust_remote_code,
        dist_timeout_s=ns.sim_placement_timeout_s,
        quantization=ns.quantization,
        chat_template=ns.chat_template,
        context_length=ns.max_model_len,
        log_level="info",
        ttft_ms=ns.sim_ttft_ms,
        tpot_ms=ns.sim_tpot_ms,
        heartbeat_s=ns.sim_heartbeat_s,
        rank_timeout_s=ns.sim_rank_timeout_s,
        ignored_args=tuple(ignored),
        prefill_us_per_token=ns.sim_prefill_us_per_token,
        prefix_cache_tokens=ns.sim_prefix_cache_tokens,
    )
    problems = validation_problems(sim)
    ray_head = None
    if ns.distributed_executor_backend == "ray":
        address = env.get("RAY_ADDRESS", "").removeprefix("ray://")
        if address:
            ray_head = parse_dist_init_addr(address)
        else:
            problems.append("--distributed-executor-backend ray needs RAY_ADDRESS (the Ray head)")
    if problems:
        raise ArgsError("; ".join(problems))
    return VllmArgs(sim, ns.distributed_executor_backend, ray_head)


def _parser(env: Mapping[str, str]) -> _Parser:
    parser = _Parser(prog="python -m llm_launch.simulator vllm serve", allow_abbrev=False,
                     exit_on_error=False)  # fmt: skip
    add = parser.add_argument
    add("model_tag", nargs="?", default=None)
    add("--model", default=None)
    add("--served-model-name", nargs="+", default=None)
    add("--tensor-parallel-size", "-tp", type=int, default=1)
    add("--pipeline-parallel-size", "-pp", type=int, default=1)
    add("--distributed-executor-backend", default=None,
        choices=["ray", "mp", "uni", "external_launcher"])  # fmt: skip
    add("--host", default="0.0.0.0")
    add("--port", type=int, default=8000)
    add("--quantization", "-q", default=None)
    add("--chat-template", default=None)
    add("--max-model-len", type=int, default=None)
    add("--trust-remote-code", action="store_true")
    add("--sim-ttft-ms", type=float, default=_env_ms(env, ENV_TTFT_MS, DEFAULT_TTFT_MS))
    add("--sim-tpot-ms", type=float, default=_env_ms(env, ENV_TPOT_MS, DEFAULT_TPOT_MS))
    add_prefix_cache_flags(parser, env)
    add("--sim-heartbeat-s", type=float, default=1.0)
    add("--sim-rank-timeout-s", type=float, default=5.0)
    add("--sim-placement-timeout-s", type=float, default=600.0)
    return parser


async def serve_vllm(args: VllmArgs) -> int:
    if args.ray_head is None:
        return await serve_app(build_app(args.sim, SingleNode()), args.sim, None)
    timing = RendezvousTiming(args.sim.dist_timeout_s, args.sim.heartbeat_s,
                              args.sim.rank_timeout_s)  # fmt: skip
    placement = RayPlacement(args.ray_head, args.world_size, timing)
    reason = await placement.place()
    if reason is not None:
        log.critical("exiting: %s", reason)
        return EXIT_GROUP_FAILED
    return await serve_app(build_app(args.sim, placement), args.sim, placement.watch)


class RayPlacement:
    """vLLM's placement group of tp x pp GPUs on the Ray cluster (a GroupStatus)."""

    def __init__(self, head: DistAddr, need_gpus: int, timing: RendezvousTiming) -> None:
        self._head = head
        self._need = need_gpus
        self._timing = timing
        self._nodes: list[dict[str, Any]] = []
        self._placed_on: list[int] | None = None  # node ids, once placed

    def problem(self) -> str | None:
        if self._placed_on is None:
            return f"placement group not ready: {self._describe_gpus()}"
        return None  # a lost node ends the process (watch)

    def describe(self) -> dict[str, Any]:
        return {
            "executor": "ray",
            "ray_head": str(self._head),
            "need_gpus": self._need,
            "state": "forming" if self._placed_on is None else "formed",
            "placed_on_nodes": self._placed_on,
            "nodes": self._nodes,
            "problem": self.problem(),
        }

    async def place(self) -> str | None:
        """Wait until the live nodes' GPUs cover the group; a reason if they never do."""
        loop = asyncio.get_running_loop()
        deadline = next_note = loop.time()
        deadline += self._timing.dist_timeout_s
        while True:
            unreachable = await self._poll()
            if unreachable is None and (placed := _place(self._nodes, self._need)) is not None:
                self._placed_on = placed
                log.info("placement group of %d GPUs ready on Ray nodes %s", self._need, placed)
                return None
            what = unreachable or self._describe_gpus()
            if loop.time() >= deadline:
                return (f"placement group of {self._need} GPUs not ready within "
                        f"{self._timing.dist_timeout_s:g}s: {what}")  # fmt: skip
            if loop.time() >= next_note:
                log.warning("waiting for a placement group of %d GPUs: %s", self._need, what)
                next_note += WAIT_LOG_S
            await asyncio.sleep(self._timing.heartbeat_s)

    async def watch(self) -> str:
        """While serving: return why the engine must stop (a node it uses died, or the head
        has not answered for the rank timeout)."""
        loop = asyncio.get_running_loop()
        last_answer = loop.time()
        while True:
            await asyncio.sleep(self._timing.heartbeat_s)
            unreachable = await self._poll()
            if unreachable is not None:
                if loop.time() - last_answer >= self._timing.rank_timeout_s:
                    return f"lost the Ray cluster: {unreachable}"
                continue
            last_answer = loop.time()
            for node in self._nodes:
                if node["node_id"] in (self._placed_on or []) and not node["alive"]:
                    return (f"Ray node {node['node_id']} at {node['node_ip']} died "
                            f"({node['lost']}); the engine's workers there are gone")  # fmt: skip

    async def _poll(self) -> str | None:
        """Refresh the node list; a reason when the head does not answer."""
        try:
            self._nodes = await cluster_nodes(self._head, self._timing.rank_timeout_s)
        except (OSError, TimeoutError, wire.LinkLost) as exc:
            return f"the Ray head at {self._head} does not answer ({exc or type(exc).__name__})"
        return None

    def _describe_gpus(self) -> str:
        alive = [n for n in self._nodes if n["alive"]]
        gpus = sum(n["num_gpus"] for n in alive)
        return f"{gpus} of {self._need} GPUs alive in the Ray cluster ({len(alive)} nodes)"


def _place(nodes: list[dict[str, Any]], need: int) -> list[int] | None:
    """The live nodes, in order, whose GPUs cover `need` (vLLM packs its bundles); or None."""
    placed, gpus = [], 0
    for node in nodes:
        if node["alive"] and node["num_gpus"] > 0 and gpus < need:
            placed.append(int(node["node_id"]))
            gpus += int(node["num_gpus"])
    return placed if gpus >= need else None
