"""Flags of the simulated engine: SGLang's launch flags plus our `--sim-*` latency model.

Called by `simulator.server.main` with exactly the argv the startup program would give
`python3 -m sglang.launch_server`. Returns a validated `SimArgs` or raises `ArgsError`
with one line that says every problem found; `main` prints it and exits 2.

Flags SGLang has but the simulator does not model (`--mem-fraction-static`,
`--json-model-override-args '{...}'`, ...) are accepted and kept in `ignored_args`, so a
user's extra engine args never break a simulated group.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

ENV_TTFT_MS = "LLM_LAUNCH_SIM_TTFT_MS"
ENV_TPOT_MS = "LLM_LAUNCH_SIM_TPOT_MS"
DEFAULT_TTFT_MS = 20.0
DEFAULT_TPOT_MS = 5.0
ENV_PREFILL_US = "LLM_LAUNCH_SIM_PREFILL_US_PER_TOKEN"
ENV_PREFIX_CACHE_TOKENS = "LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS"
# About what one 80 GB GPU's KV cache holds of an 8B model's tokens: enough that a
# benchmark's shared prefixes stay, few enough that a long run evicts.
DEFAULT_PREFIX_CACHE_TOKENS = 1_000_000


class ArgsError(ValueError):
    """The command line cannot start an engine; the message is one line."""


@dataclass(frozen=True)
class DistAddr:
    """The rendezvous address of rank 0 (`--dist-init-addr`)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SimArgs:
    model_path: str
    served_model_name: str
    tp_size: int
    pp_size: int
    nnodes: int
    node_rank: int
    dist_init_addr: DistAddr | None
    host: str
    port: int
    trust_remote_code: bool
    dist_timeout_s: float
    quantization: str | None
    chat_template: str | None
    context_length: int | None
    log_level: str
    ttft_ms: float
    tpot_ms: float
    heartbeat_s: float
    rank_timeout_s: float
    ignored_args: tuple[str, ...] = ()
    prefill_us_per_token: float = 0.0
    prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS

    def as_info(self) -> dict[str, Any]:
        """The flags as JSON-ready data, for `/get_server_info`."""
        info = asdict(self)
        info["dist_init_addr"] = str(self.dist_init_addr) if self.dist_init_addr else None
        info["ignored_args"] = list(self.ignored_args)
        return info


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgsError(message)


def parse_dist_init_addr(value: str) -> DistAddr:
    """`host:port` or `[ipv6]:port`. A bare IPv6 address is rejected, as SGLang does at runtime."""
    if value.startswith("["):
        inside, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ArgsError(f"--dist-init-addr {value!r}: expected [IPV6]:PORT")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ArgsError(
                f"--dist-init-addr {value!r}: {inside!r} is not an IPv6 address"
            ) from None
        host = inside
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ArgsError(f"--dist-init-addr {value!r}: expected HOST:PORT")
        if ":" in host:
            raise ArgsError(
                f"--dist-init-addr {value!r}: an IPv6 address must be bracketed, "
                f"e.g. [{host}]:{port_text}"
            )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ArgsError(f"--dist-init-addr {value!r}: port must be 1-65535")
    return DistAddr(host, int(port_text))


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> SimArgs:
    env = os.environ if env is None else env
    parser = _build_parser(env)
    try:
        ns, ignored = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ArgsError(str(exc)) from None
    dist = parse_dist_init_addr(ns.dist_init_addr) if ns.dist_init_addr else None
    args = SimArgs(
        model_path=ns.model_path,
        served_model_name=ns.served_model_name or ns.model_path,
        tp_size=ns.tp_size,
        pp_size=ns.pp_size,
        nnodes=ns.nnodes,
        node_rank=ns.node_rank,
        dist_init_addr=dist,
        host=ns.host,
        port=ns.port,
        trust_remote_code=ns.trust_remote_code,
        dist_timeout_s=ns.dist_timeout,
        quantization=ns.quantization,
        chat_template=ns.chat_template,
        context_length=ns.context_length,
        log_level=ns.log_level,
        ttft_ms=ns.sim_ttft_ms,
        tpot_ms=ns.sim_tpot_ms,
        heartbeat_s=ns.sim_heartbeat_s,
        rank_timeout_s=ns.sim_rank_timeout_s,
        ignored_args=tuple(ignored),
        prefill_us_per_token=ns.sim_prefill_us_per_token,
        prefix_cache_tokens=ns.sim_prefix_cache_tokens,
    )
    problems = validation_problems(args)
    if problems:
        raise ArgsError("; ".join(problems))
    return args


def validation_problems(args: SimArgs) -> list[str]:
    """Every rule the flags break: SGLang's own, plus the ones SGLang forgets to check."""
    problems = []
    for name in ("tp_size", "pp_size", "nnodes"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1")
    if problems:
        return problems
    if (args.tp_size * args.pp_size) % args.nnodes:
        problems.append(
            f"tp_size * pp_size ({args.tp_size} * {args.pp_size}) must be divisible "
            f"by nnodes ({args.nnodes})"
        )
    if not 0 <= args.node_rank < args.nnodes:
        problems.append(f"--node-rank {args.node_rank} must be in [0, {args.nnodes - 1}]")
    if args.nnodes > 1 and args.dist_init_addr is None:
        problems.append("--dist-init-addr HOST:PORT is required when --nnodes > 1")
    if args.nnodes > 1 and args.dist_init_addr and args.dist_init_addr.port == args.port:
        problems.append(
            f"--port {args.port} must differ from the --dist-init-addr port "
            "(rank 0 listens on both)"
        )
    if not 0 <= args.port <= 65535:
        problems.append(f"--port {args.port} must be 0-65535")
    for flag, value in (
        ("--dist-timeout", args.dist_timeout_s),
        ("--sim-heartbeat-s", args.heartbeat_s),
    ):
        if value <= 0:
            problems.append(f"{flag} must be > 0")
    for flag, value in (
        ("--sim-ttft-ms", args.ttft_ms),
        ("--sim-tpot-ms", args.tpot_ms),
        ("--sim-prefill-us-per-token", args.prefill_us_per_token),
        ("--sim-prefix-cache-tokens", args.prefix_cache_tokens),
    ):
        if value < 0:
            problems.append(f"{flag} must be >= 0")
    if args.rank_timeout_s <= args.heartbeat_s:
        problems.append("--sim-rank-timeout-s must be greater than --sim-heartbeat-s")
    if args.context_length is not None and args.context_length < 1:
        problems.append("--context-length must be >= 1")
    return problems


def add_prefix_cache_flags(parser: argparse._ActionsContainer, env: Mapping[str, str]) -> None:
    """The prefill cost per uncached prompt token and the prefix cache's size (both
    engines' simulators take them)."""
    prefill = _env_number(env, ENV_PREFILL_US, 0.0, "microseconds")
    cache = _env_number(env, ENV_PREFIX_CACHE_TOKENS, DEFAULT_PREFIX_CACHE_TOKENS, "tokens")
    parser.add_argument("--sim-prefill-us-per-token", type=float, default=prefill)
    parser.add_argument("--sim-prefix-cache-tokens", type=int, default=int(cache))


def _env_number(env: Mapping[str, str], name: str, default: float, unit: str) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw) if unit != "tokens" else int(raw)
    except ValueError:
        raise ArgsError(f"{name}={raw!r} is not a number of {unit}") from None


def _env_ms(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ArgsError(f"{name}={raw!r} is not a number of milliseconds") from None


def _build_parser(env: Mapping[str, str]) -> _Parser:
    parser = _Parser(
        prog="python -m llm_launch.simulator",
        description="SIMULATED SGLang engine (no GPU, no model): SGLang's flags and HTTP API.",
        allow_abbrev=False,
        exit_on_error=False,
    )
    add = parser.add_argument
    add("--model-path", "--model", required=True)
    add("--served-model-name", default=None)
    add("--tp-size", "--tp", "--tensor-parallel-size", dest="tp_size", type=int, default=1)
    add("--pp-size", "--pipeline-parallel-size", dest="pp_size", type=int, default=1)
    add("--nnodes", type=int, default=1)
    add("--node-rank", type=int, default=0)
    add("--dist-init-addr", default=None)
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=30000)
    add("--trust-remote-code", action="store_true")
    add("--dist-timeout", type=float, default=600.0)
    add("--quantization", default=None)
    add("--chat-template", default=None)
    add("--context-length", type=int, default=None)
    add("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"])
    sim = parser.add_argument_group("simulator (llm-launch only)")
    sim.add_argument(
        "--sim-ttft-ms", type=float, default=_env_ms(env, ENV_TTFT_MS, DEFAULT_TTFT_MS)
    )
    sim.add_argument(
        "--sim-tpot-ms", type=float, default=_env_ms(env, ENV_TPOT_MS, DEFAULT_TPOT_MS)
    )
    add_prefix_cache_flags(sim, env)
    sim.add_argument("--sim-heartbeat-s", type=float, default=1.0)
    sim.add_argument("--sim-rank-timeout-s", type=float, default=5.0)
    return parser
