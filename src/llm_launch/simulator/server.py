"""Runs one simulated SGLang process: parse flags, announce, join the group, serve HTTP.

Called by `python -m llm_launch.simulator` (see `__main__`), which the startup program
execs with the argv it would give `python3 -m sglang.launch_server`. Next hops:
`simulator.args` (flags), `simulator.leader` / `simulator.worker` (rendezvous) and
`simulator.app` (HTTP, on uvicorn).

Exit status: 2 for bad flags (one line on stderr); 1 when the group fails (rank 0: it
never formed; a worker: rank 0 unreachable, refused it, or was lost), with the reason
as the last log line; killed by the signal otherwise (SIGTERM shuts down cleanly).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

from llm_launch.simulator.app import build_app, build_worker_app
from llm_launch.simulator.args import ArgsError, SimArgs, parse_args
from llm_launch.simulator.group import GroupShape, RendezvousTiming, SingleNode
from llm_launch.simulator.leader import Leader
from llm_launch.simulator.worker import Worker

log = logging.getLogger("llm_launch.simulator")

EXIT_BAD_FLAGS = 2
EXIT_GROUP_FAILED = 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except ArgsError as exc:
        print(f"llm_launch.simulator: error: {exc}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    configure_logging(args)
    announce(args)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(args))


async def serve(args: SimArgs) -> int:
    app, rendezvous = _role(args)
    return await serve_app(app, args, rendezvous)


async def serve_app(app: FastAPI, args: SimArgs, rendezvous: Rendezvous | None) -> int:
    """Serve `app` over HTTP while `rendezvous` runs; when it returns (the reason the group
    failed), stop and exit 1. Shared with the simulated vLLM (`simulator.vllm`)."""
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    http = asyncio.create_task(server.serve(), name="http")
    if rendezvous is None:
        await http
        return 0
    group = asyncio.create_task(rendezvous(), name="rendezvous")
    await asyncio.wait({http, group}, return_when=asyncio.FIRST_COMPLETED)
    if not group.done():  # HTTP stopped first (a signal): leave quietly
        group.cancel()
        await asyncio.gather(group, return_exceptions=True)
        return 0
    try:
        reason = group.result()
    except OSError as exc:
        reason = f"rank {args.node_rank}: rendezvous failed at {args.dist_init_addr}: {exc}"
    log.critical("exiting: %s", reason)
    server.should_exit = True
    await http
    return EXIT_GROUP_FAILED


Rendezvous = Callable[[], Coroutine[Any, Any, str]]


def _role(args: SimArgs) -> tuple[FastAPI, Rendezvous | None]:
    """The HTTP app of this rank, and its rendezvous (None on a single node)."""
    if args.nnodes == 1:
        return build_app(args, SingleNode()), None
    assert args.dist_init_addr is not None  # checked by parse_args
    shape = GroupShape(args.nnodes, args.tp_size, args.pp_size)
    timing = RendezvousTiming(args.dist_timeout_s, args.heartbeat_s, args.rank_timeout_s)
    if args.node_rank == 0:
        leader = Leader(args.dist_init_addr, shape, timing)
        return build_app(args, leader), leader.run
    worker = Worker(args.dist_init_addr, args.node_rank, shape, timing)
    return build_worker_app(args.node_rank), worker.run


def configure_logging(args: SimArgs, role: str | None = None) -> None:
    role = role or f"rank {args.node_rank}"
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [SIMULATED {role}] %(name)s: %(message)s",
    )


def announce(args: SimArgs, engine: str = "SGLang", where: str | None = None) -> None:
    """`where`: the process's place in its group (default: its rank of `--nnodes`)."""
    log.warning(
        "SIMULATED ENGINE: llm-launch's simulator stands in for %s here: no GPU, no model "
        "weights, synthetic text. model=%s served as %r, %s, tp=%d pp=%d, "
        "http %s:%d",
        engine,
        args.model_path,
        args.served_model_name,
        where or f"rank {args.node_rank} of {args.nnodes}",
        args.tp_size,
        args.pp_size,
        args.host,
        args.port,
    )
    log.warning(
        "SIMULATED ENGINE: latency model: first token after %gms, then one token every %gms",
        args.ttft_ms,
        args.tpot_ms,
    )
    if args.prefill_us_per_token > 0:
        log.warning(
            "SIMULATED ENGINE: prefill %gus per prompt token not in its prefix cache "
            "(%d tokens at most)",
            args.prefill_us_per_token,
            args.prefix_cache_tokens,
        )
    if args.ignored_args:
        log.warning(
            "SIMULATED ENGINE: ignoring %s flags it does not model: %s",
            engine,
            shlex.join(args.ignored_args),
        )
    if args.chat_template:
        log.info(
            "--chat-template %s is not applied; chat prompts use the simulator's template",
            args.chat_template,
        )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop
    return uvloop.new_event_loop
