"""`llm-launch-startup`: the program every pod of a group runs before its engine.

Started by the container command of a launch plan (engines/common.py), in Kubernetes
pods and in the local backend's processes alike. In order, it:
1. finds the leader's address (argument or LWS_LEADER_ADDRESS, plus the cluster
   domain) and resolves it to one IP of the preferred family;
2. finds this pod's IP (POD_IP from the downward API, or resolution of its hostname);
3. builds the engine command (`--host ::` on IPv6, bracketed `--dist-init-addr`) and
   refuses impossible groups (equal ports, rank out of range, tp x pp vs nodes);
4. fetches the weights (runtime/startup/weights.py), also for a simulated engine where the
   checkpoint is reachable from here (`simulated_fetch_skipped` says where it is not);
5. on the leader, waits until every worker's name resolves; on a worker, until the
   leader's rendezvous port answers;
6. execs the engine, so signals reach it and its exit status is the pod's.
`--dry-run` stops after step 3 and prints the argv and environment as JSON.

At each step it reports its phase to `$LLM_LAUNCH_PROGRESS_FILE` (runtime/startup/progress.py),
with the bytes fetched while it downloads, and the error when it fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from llm_launch.domain.checkpoints import parse_checkpoint_roots
from llm_launch.domain.progress import Phase
from llm_launch.engines.plan import IpFamily
from llm_launch.runtime.startup.engine_command import (
    SIMULATED,
    EngineLaunch,
    EngineRequest,
    ResolvedAddresses,
    build_engine_launch,
    check_request,
)
from llm_launch.runtime.startup.network import (
    Deadline,
    Resolver,
    StartupError,
    family_of,
    host_port,
    is_ip_literal,
    pick_address,
    resolve_one,
    system_resolver,
    wait_for_workers,
    with_cluster_domain,
    worker_names,
)
from llm_launch.runtime.startup.progress import ProgressReporter

PROGRAM = "llm-launch-startup"
ROOTS_VARIABLE = "LLM_LAUNCH_CHECKPOINT_ROOTS"
LEADER_POLL_S = 1.0  # how often a worker tries the leader's rendezvous port
LEADER_WAIT_LOG_S = 30.0  # how often it says it still waits
RAY_POLL_S = 5.0  # how often the vLLM leader counts the Ray nodes that joined


def log(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n")[0])
    p.add_argument("framework", choices=["sglang", "vllm"])
    p.add_argument("--role", choices=["leader", "worker"], help="checked against the node rank")
    p.add_argument("--nnodes", type=int, default=int(env.get("LWS_GROUP_SIZE", "1")))
    p.add_argument("--node-rank", type=int, default=int(env.get("LWS_WORKER_INDEX", "0")),
                   help="default: $LWS_WORKER_INDEX (leader = 0)")  # fmt: skip
    p.add_argument("--tp-size", type=int, required=True)
    p.add_argument("--pp-size", type=int, default=1)
    p.add_argument("--engine-port", type=int, default=5005)
    p.add_argument("--dist-port", type=int, default=5002)
    p.add_argument("--model", required=True, help="model id, used as the path without a checkpoint")
    p.add_argument("--served-model-name")
    p.add_argument("--checkpoint-path")
    p.add_argument("--quantization")
    p.add_argument("--chat-template", default=env.get("LLM_LAUNCH_CHAT_TEMPLATE"),
                   help="template text; default $LLM_LAUNCH_CHAT_TEMPLATE")  # fmt: skip
    p.add_argument("--ip-family", choices=[f.value for f in IpFamily], default="auto")
    p.add_argument("--bind-host")
    p.add_argument("--cluster-domain", default=env.get("LLM_LAUNCH_CLUSTER_DOMAIN"))
    p.add_argument("--leader-address", default=env.get("LWS_LEADER_ADDRESS"))
    p.add_argument("--worker-addresses", default=env.get("LLM_LAUNCH_WORKER_ADDRESSES"),
                   help="comma-separated; default: derived from the leader's LWS name")  # fmt: skip
    p.add_argument("--weights-dir", default="/models")
    p.add_argument("--resolve-timeout", type=float, default=300)
    p.add_argument("--worker-wait-timeout", type=float, default=1200)
    p.add_argument("--engine-mode", choices=["real", SIMULATED],
                   default=env.get("LLM_LAUNCH_ENGINE_MODE", "real"))  # fmt: skip
    p.add_argument("--engine-program", default=env.get("LLM_LAUNCH_ENGINE_PROGRAM"),
                   help="replaces `python -m sglang.launch_server` (shell words)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print argv and env as JSON; exit 0")
    p.epilog = "Extra engine arguments follow `--`, one argv item each."
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    args.extra = argv[split + 1 :]
    return args


def engine_request(args: argparse.Namespace) -> EngineRequest:
    if args.role is not None and (args.role == "leader") != (args.node_rank == 0):
        raise StartupError(f"--role {args.role} does not match node rank {args.node_rank}")
    return EngineRequest(
        framework=args.framework,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        tp_size=args.tp_size,
        pp_size=args.pp_size,
        engine_port=args.engine_port,
        dist_port=args.dist_port,
        served_model_name=args.served_model_name or args.model,
        quantization=args.quantization,
        bind_host=args.bind_host,
        engine_mode=args.engine_mode,
        extra_args=tuple(args.extra),
        engine_program=tuple(shlex.split(args.engine_program)) if args.engine_program else None,
    )


def resolve_addresses(args: argparse.Namespace, request: EngineRequest) -> ResolvedAddresses:
    """Steps 1 and 2: the leader's IP (multi-node only) and this pod's own IP."""
    preferred = IpFamily(args.ip_family)
    pod_ip = os.environ.get("POD_IP")
    if preferred is IpFamily.AUTO and pod_ip:
        preferred = family_of(pod_ip)
    deadline = Deadline(args.resolve_timeout)
    leader_ip = None
    if request.nnodes > 1:
        if not args.leader_address:
            raise StartupError("no leader address: pass --leader-address or set LWS_LEADER_ADDRESS")
        name = with_cluster_domain(args.leader_address, args.cluster_domain)
        leader_ip = resolve_one(name, preferred, deadline)
        log(f"leader {name} is {leader_ip}")
        if preferred is IpFamily.AUTO:
            preferred = family_of(leader_ip)
    if pod_ip:
        own_ip = pod_ip
    elif request.node_rank == 0 and leader_ip:
        own_ip = leader_ip
    else:
        own_ip = resolve_one(socket.gethostname(), preferred, deadline)
    family = family_of(own_ip)
    if leader_ip and family_of(leader_ip) is not family:
        raise StartupError(
            f"leader IP {leader_ip} and this pod's IP {own_ip} are of different families"
        )
    return ResolvedAddresses(own_ip=own_ip, leader_ip=leader_ip, family=family)


def prepare_model(
    args: argparse.Namespace, request: EngineRequest, progress: ProgressReporter
) -> str:
    """Step 4: the path the engine loads (the fetched checkpoint, or the model id)."""
    if not args.checkpoint_path:
        return str(args.model)
    if request.engine_mode == SIMULATED:
        skipped = simulated_fetch_skipped(args.checkpoint_path, os.environ)
        if skipped is not None:
            log(f"simulated engine: not fetching {args.checkpoint_path}: {skipped}")
            return str(args.model)
    if args.dry_run:
        return f"<{args.checkpoint_path} fetched under {args.weights_dir}>"
    from llm_launch.runtime.startup.weights import WeightsError, fetch_checkpoint

    try:
        path = fetch_checkpoint(
            args.checkpoint_path,
            Path(args.weights_dir),
            log=log,
            checkpoint_roots=_roots(),
            progress=progress.fetch_meter(args.checkpoint_path),
        )
        return str(path)
    except WeightsError as exc:
        raise StartupError(str(exc)) from exc


_TRUE = ("1", "ON", "YES", "TRUE")  # huggingface_hub's reading of a boolean variable


def simulated_fetch_skipped(uri: str, env: Mapping[str, str]) -> str | None:
    """Why a simulated engine's startup does not fetch `uri`, or None: it fetches it as the
    real one would, so a missing or empty checkpoint fails the same way.

    The fetch runs where the checkpoint is reachable from this machine without the
    network at large: a local path (file:// or absolute), S3 behind an endpoint configured
    here (an S3-compatible store, AWS_ENDPOINT_URL), the Hugging Face cache when the Hub is
    used offline (HF_HUB_OFFLINE). A scheme the fetch does not know is fetched, and so
    refused as in real mode. Elsewhere the engine, which loads nothing, gets the model id.
    """
    scheme, sep, _ = uri.partition("://")
    if not sep or scheme == "file":
        return None
    if scheme == "s3":
        if env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"):
            return None
        return "no S3-compatible endpoint is configured here (AWS_ENDPOINT_URL)"
    if scheme == "hf":
        if env.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
            return None
        return "the Hugging Face Hub is not used offline here (HF_HUB_OFFLINE)"
    if scheme == "gs":
        return "Google Cloud Storage is not fetched for a simulated engine"
    return None


def _roots() -> tuple[PurePosixPath, ...] | None:
    """Checkpoint roots from LLM_LAUNCH_CHECKPOINT_ROOTS; set but empty allows none, unset
    (a pod not started by an llm-launch server that sets it) checks nothing."""
    value = os.environ.get(ROOTS_VARIABLE)
    if value is None:
        return None
    try:
        return parse_checkpoint_roots(value)
    except ValueError as exc:
        raise StartupError(f"{ROOTS_VARIABLE}: {exc}") from exc


def chat_template_file(args: argparse.Namespace) -> str | None:
    """SGLang's --chat-template takes a file or a built-in name, not inline text."""
    if not args.chat_template:
        return None
    digest = hashlib.sha256(args.chat_template.encode()).hexdigest()[:16]
    path = Path(args.weights_dir) / f"chat-template-{digest}.jinja"
    if not args.dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The weights directory may be a cache that other pods share, whose engines may be
        # reading this very file: write a sibling and rename it over, never truncate in place.
        staged = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        try:
            staged.write_text(args.chat_template)
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    return str(path)


def await_workers(
    args: argparse.Namespace,
    request: EngineRequest,
    family: IpFamily,
    progress: ProgressReporter,
    resolver: Resolver = system_resolver,
) -> None:
    """Step 5: the leader does not start before its workers are scheduled."""
    if request.node_rank != 0 or request.nnodes == 1:
        return
    if args.worker_addresses:
        names = [n.strip() for n in args.worker_addresses.split(",") if n.strip()]
    elif is_ip_literal(args.leader_address):
        log("leader address is an IP; worker names unknown, so not waiting for workers")
        return
    else:
        leader = with_cluster_domain(args.leader_address, args.cluster_domain)
        names = worker_names(leader, request.nnodes)
    log(f"waiting for {len(names)} worker(s): {', '.join(names)}")
    awaited = list(names)
    progress.report(Phase.WAITING_FOR_WORKERS, _awaited(awaited, request.nnodes))

    def resolve(name: str, wanted: IpFamily) -> list[str]:
        # The report follows the workers as their names resolve (their pods are scheduled).
        addresses = resolver(name, wanted)
        if name in awaited and pick_address(addresses, wanted) is not None:
            awaited.remove(name)
            progress.report(Phase.WAITING_FOR_WORKERS, _awaited(awaited, request.nnodes))
        return addresses

    wait_for_workers(names, family, Deadline(args.worker_wait_timeout), resolve, log=log)


def _awaited(names: Sequence[str], nnodes: int) -> str:
    if not names:
        return f"all {nnodes - 1} scheduled"
    return f"{len(names)} of {nnodes - 1} not scheduled yet: {', '.join(names)}"


def await_leader(
    request: EngineRequest, addresses: ResolvedAddresses, progress: ProgressReporter
) -> None:
    """Step 5 on a worker: start the engine only once the leader's rendezvous port answers
    (SGLang's store, or the Ray head, which `ray start --address` needs up).

    No deadline: the leader may download weights for an hour first, and a worker giving up
    would recreate the whole group (RecreateGroupOnPodRestart), download included. A
    leader that never comes up is restarted by its own startup budget, the group with it.
    """
    if request.node_rank == 0 or addresses.leader_ip is None:
        return
    target = host_port(addresses.leader_ip, request.dist_port)
    progress.report(Phase.WAITING_FOR_LEADER, f"its rendezvous port {target}")
    started = next_note = time.monotonic()
    while not _answers(addresses.leader_ip, request.dist_port):
        if time.monotonic() >= next_note:
            log(f"waiting for the leader at {target} ({time.monotonic() - started:.0f}s)")
            next_note += LEADER_WAIT_LOG_S
        time.sleep(LEADER_POLL_S)
    log(f"the leader answers at {target}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=LEADER_POLL_S):
            return True
    except OSError:
        return False


def start_engine(launch: EngineLaunch, timeout: float, progress: ProgressReporter) -> None:
    """Step 6: run any preparatory command, then exec the engine."""
    env = {**os.environ, **launch.env}
    if launch.before:
        progress.report(Phase.WAITING_FOR_WORKERS, "starting the Ray head")
    for command in launch.before:
        log(f"running {json.dumps(list(command))}")
        subprocess.run(command, env=env, check=True)
    if launch.await_ray_nodes:
        await_ray_nodes(launch, timeout, env, progress)
    progress.report(Phase.STARTING_ENGINE)
    log(f"exec {json.dumps(list(launch.argv))}")
    os.execvpe(launch.argv[0], list(launch.argv), env)


def await_ray_nodes(
    launch: EngineLaunch, timeout: float, env: dict[str, str], progress: ProgressReporter
) -> None:
    count = launch.await_ray_nodes or 0
    alive = 0
    progress.report(Phase.WAITING_FOR_WORKERS, f"0 of {count} Ray nodes joined")

    def attempt() -> bool:
        nonlocal alive
        result = subprocess.run(launch.ray_probe, env=env, capture_output=True, text=True)
        lines = result.stdout.split()
        seen = int(lines[-1]) if result.returncode == 0 and lines and lines[-1].isdigit() else 0
        if seen != alive:
            progress.report(Phase.WAITING_FOR_WORKERS, f"{seen} of {count} Ray nodes joined")
        alive = seen
        return alive >= count

    if not Deadline(timeout).run(attempt, interval=RAY_POLL_S):
        raise StartupError(f"only {alive} of {count} Ray nodes joined within {timeout:g}s")


_SHOWN_ENV_PREFIXES = ("NCCL_", "GLOO_", "LWS_", "SGLANG_", "VLLM_", "POD_", "LLM_LAUNCH_")


def inherited_env() -> dict[str, str]:
    """The environment variables that shape the group, as the engine will see them."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(_SHOWN_ENV_PREFIXES)}


def dry_run_document(
    request: EngineRequest, addresses: ResolvedAddresses, launch: EngineLaunch
) -> dict[str, object]:
    return {
        "role": "leader" if request.node_rank == 0 else "worker",
        "node_rank": request.node_rank,
        "argv": list(launch.argv),
        "env": {**inherited_env(), **launch.env},
        "before": [list(command) for command in launch.before],
        "own_ip": addresses.own_ip,
        "leader_ip": addresses.leader_ip,
    }


def run(argv: Sequence[str], progress: ProgressReporter | None = None) -> int:
    progress = progress or ProgressReporter(None, 0, log)
    args = parse_args(argv)
    progress.rank = args.node_rank
    if args.dry_run:
        progress.path = None  # a dry run starts nothing, so it reports nothing
    request = engine_request(args)
    check_request(request)
    if request.nnodes > 1:
        progress.report(Phase.RESOLVING_LEADER, args.leader_address)
    addresses = resolve_addresses(args, request)
    model_path = prepare_model(args, request, progress)
    launch = build_engine_launch(request, addresses, model_path, chat_template_file(args))
    if args.dry_run:
        print(json.dumps(dry_run_document(request, addresses, launch), indent=2))
        return 0
    await_workers(args, request, addresses.family, progress)
    await_leader(request, addresses, progress)
    started = time.monotonic()
    start_engine(launch, args.worker_wait_timeout, progress)
    raise AssertionError(f"exec returned after {time.monotonic() - started:.1f}s")  # unreachable


def main(argv: Sequence[str] | None = None) -> None:
    progress = ProgressReporter.from_environment(log)
    try:
        sys.exit(run(sys.argv[1:] if argv is None else argv, progress))
    except (StartupError, OSError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        # The one line a status shows for this rank: what failed, not the log's last line.
        progress.report(Phase.FAILED, str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
