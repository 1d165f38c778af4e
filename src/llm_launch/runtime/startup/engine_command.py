"""The engine's exact command line, from the startup arguments and resolved addresses.

Pure (no I/O), so the rules are unit-tested directly and `--dry-run` shows exactly what
would run. Called by `runtime/startup/program.py`; the result is exec'd.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from llm_launch.engines.plan import IpFamily
from llm_launch.runtime.startup.network import StartupError, host_port

SIMULATED = "simulated"


@dataclass(frozen=True)
class EngineRequest:
    """What the startup program was asked to run, after defaults from the environment."""

    framework: str  # "sglang" or "vllm"
    nnodes: int
    node_rank: int
    tp_size: int
    pp_size: int
    engine_port: int
    dist_port: int
    served_model_name: str
    quantization: str | None = None
    bind_host: str | None = None
    engine_mode: str = "real"  # "real" or "simulated"
    extra_args: tuple[str, ...] = ()
    # Replaces the SGLang server program (`python -m sglang.launch_server`), e.g. for a
    # custom interpreter in the image, or a probe program in tests.
    engine_program: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ResolvedAddresses:
    own_ip: str
    leader_ip: str | None  # None for single-node groups
    family: IpFamily  # IPV4 or IPV6, never AUTO


# Prints how many nodes of the Ray cluster this node belongs to are alive.
_RAY_ALIVE = "import ray; ray.init(address='auto', logging_level='ERROR'); " \
    "print(sum(1 for n in ray.nodes() if n['Alive']))"  # fmt: skip
# The simulated engine's environment: what a real node would have found out by itself.
SIM_GPUS_ENV = "LLM_LAUNCH_SIM_NUM_GPUS"  # GPUs of this node (Ray detects real ones)
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # the Ray head, for `vllm serve` (ray.init reads it too)


@dataclass(frozen=True)
class EngineLaunch:
    argv: tuple[str, ...]
    env: dict[str, str]
    # vLLM multi-node: commands to run first (Ray head), and how many Ray nodes to await.
    before: tuple[tuple[str, ...], ...] = field(default=())
    await_ray_nodes: int | None = None
    # Prints the number of live Ray nodes (last line of its output), while awaiting them.
    ray_probe: tuple[str, ...] = ()


def check_request(request: EngineRequest) -> None:
    """The refusals SGLang itself does not make (and the one it does, made early)."""
    if request.engine_port == request.dist_port:
        raise StartupError(
            f"engine port {request.engine_port} equals the rendezvous port; they must differ "
            "(the leader hosts the torch.distributed store on the rendezvous port)"
        )
    if not 0 <= request.node_rank < request.nnodes:
        raise StartupError(
            f"node rank {request.node_rank} is outside 0..{request.nnodes - 1} "
            f"for a group of {request.nnodes} nodes (check LWS_WORKER_INDEX and LWS_GROUP_SIZE)"
        )
    if (request.tp_size * request.pp_size) % request.nnodes != 0:
        raise StartupError(
            f"tp ({request.tp_size}) x pp ({request.pp_size}) is not divisible by "
            f"the number of nodes ({request.nnodes})"
        )


def bind_host(request: EngineRequest, family: IpFamily) -> str:
    if request.bind_host:
        return request.bind_host
    return "::" if family is IpFamily.IPV6 else "0.0.0.0"


def build_engine_launch(
    request: EngineRequest,
    addresses: ResolvedAddresses,
    model_path: str,
    chat_template_file: str | None,
) -> EngineLaunch:
    check_request(request)
    if request.framework == "vllm":
        return _vllm(request, addresses, model_path, chat_template_file)
    return _sglang(request, addresses, model_path, chat_template_file)


def _sglang(
    r: EngineRequest, a: ResolvedAddresses, model_path: str, chat_template_file: str | None
) -> EngineLaunch:
    module = "llm_launch.simulator" if r.engine_mode == SIMULATED else "sglang.launch_server"
    program = r.engine_program or (sys.executable, "-m", module)
    argv = [
        *program,
        "--model-path", model_path,
        "--served-model-name", r.served_model_name,
        "--tp-size", str(r.tp_size),
        "--host", bind_host(r, a.family),
        "--port", str(r.engine_port),
    ]  # fmt: skip
    if r.pp_size > 1:
        argv += ["--pp-size", str(r.pp_size)]
    if r.nnodes > 1:
        assert a.leader_ip is not None
        argv += [
            "--nnodes", str(r.nnodes),
            "--node-rank", str(r.node_rank),
            "--dist-init-addr", host_port(a.leader_ip, r.dist_port),
        ]  # fmt: skip
    argv += _optional(r, chat_template_file)
    # On the leader SGLANG_HOST_IP is the leader's IP (the runbook's rule 1); on a worker,
    # its own. Without it SGLang guesses via a route to a public DNS server.
    host_ip = a.leader_ip if (r.node_rank == 0 and a.leader_ip) else a.own_ip
    return EngineLaunch(tuple(argv) + r.extra_args, {"SGLANG_HOST_IP": host_ip})


def _vllm(
    r: EngineRequest, a: ResolvedAddresses, model_path: str, chat_template_file: str | None
) -> EngineLaunch:
    """vLLM's own commands; a simulated engine runs the very same argv, each program (`vllm`,
    `ray`) replaced by the simulator's stand-in for it."""
    env = {"VLLM_HOST_IP": a.own_ip}
    vllm: tuple[str, ...] = ("vllm",)
    ray: tuple[str, ...] = ("ray",)
    if r.engine_mode == SIMULATED:
        simulator = (sys.executable, "-m", "llm_launch.simulator")
        vllm, ray = (*simulator, "vllm"), (*simulator, "ray")
        env[SIM_GPUS_ENV] = str(r.tp_size * r.pp_size // r.nnodes)
    if r.nnodes > 1 and r.node_rank > 0:
        assert a.leader_ip is not None
        join = (*ray, "start", "--address", host_port(a.leader_ip, r.dist_port),
                "--node-ip-address", a.own_ip, "--block", "--disable-usage-stats")  # fmt: skip
        return EngineLaunch(join, env)
    argv = [
        *vllm, "serve", model_path,
        "--served-model-name", r.served_model_name,
        "--tensor-parallel-size", str(r.tp_size),
        "--host", bind_host(r, a.family),
        "--port", str(r.engine_port),
    ]  # fmt: skip
    argv += _optional(r, chat_template_file)
    if r.nnodes == 1:
        return EngineLaunch(tuple(argv) + r.extra_args, env)
    argv += ["--pipeline-parallel-size", str(r.pp_size), "--distributed-executor-backend", "ray"]
    head = (*ray, "start", "--head", "--port", str(r.dist_port),
            "--node-ip-address", a.own_ip, "--disable-usage-stats")  # fmt: skip
    probe: tuple[str, ...] = (sys.executable, "-c", _RAY_ALIVE)
    if r.engine_mode == SIMULATED:
        head_address = host_port(a.own_ip, r.dist_port)
        env[RAY_ADDRESS_ENV] = head_address
        probe = (*ray, "status", "--address", head_address)
    return EngineLaunch(
        tuple(argv) + r.extra_args,
        env,
        before=(head,),
        await_ray_nodes=r.nnodes,
        ray_probe=probe,
    )


def _optional(r: EngineRequest, chat_template_file: str | None) -> list[str]:
    argv = []
    if r.quantization:
        argv += ["--quantization", r.quantization]
    if chat_template_file:
        argv += ["--chat-template", chat_template_file]
    return argv
