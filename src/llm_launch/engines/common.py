"""Pieces every framework's plan shares: the startup invocation, env, probes, forwarder,
and the group's preStop hooks (draining, `runtime.forwarder.drain`).

One definition for both backends: Kubernetes renders these probes and hooks into pods
(`backends.kubernetes.render_pod`); the local backend polls the same checks and runs the
same forwarder hook (`backends.local.controller`).
"""

from __future__ import annotations

import math

from llm_launch.domain.progress import PROGRESS_FILE_ENV
from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.args import render_engine_args
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import (
    ContainerPlan,
    EngineRoutes,
    LaunchPlan,
    Probe,
    Role,
    RolePlan,
)

ENGINE_CONTAINER = "engine"
FORWARDER_CONTAINER = "forwarder"
# The forwarder's token (the endpoint's data-plane secret) reaches it in this environment
# variable only, never in argv, so plans (printed, rendered) never hold it: the local
# backend sets it in the forwarder process, Kubernetes from the endpoint's Secret.
FORWARDER_TOKEN_ENV = "LLM_LAUNCH_FORWARDER_TOKEN"
# Each engine's startup program reports its phase here (domain/progress.py); on the leader
# the forwarder serves that report in its /readyz body. In a pod the directory is a volume
# the two containers share (backends/kubernetes/render_pod.py); the local backend gives
# every rank a file of its own instead (it sets the variable over the plan's).
PROGRESS_DIR = "/run/llm-launch"
PROGRESS_FILE = f"{PROGRESS_DIR}/progress.json"
PROBE_PERIOD_S = 10
# After its preStop hook, an engine gets this long to exit on SIGTERM before SIGKILL.
ENGINE_STOP_S = 30
# vLLM has no generation route: its leader's liveness asks the forwarder's /livez, which
# runs the forwarder's one-token completion (the same check as its /readyz, undrained).
FORWARDER_LIVENESS_PATH = "/livez"


def termination_grace_s(options: PlanOptions) -> int:
    """A pod's terminationGracePeriodSeconds: the drain grace, then the engine's stop.
    The countdown starts before the preStop hooks run ("Pod Lifecycle", termination)."""
    return options.drain_grace_s + ENGINE_STOP_S


def generation_liveness(options: PlanOptions, routes: EngineRoutes) -> Probe:
    """The leader engine's livenessProbe: a real generation check, failing for
    `hang_restart_s` (period x failureThreshold) before the kubelet restarts the engine,
    which under RecreateGroupOnPodRestart recreates the group. SGLang: its own
    `/health_generate` (a one-token generation; its `/health` may answer while the
    scheduler is wedged, and is a dummy on ranks >= 1). vLLM: `/health` only reads an
    error flag, so the forwarder's `/livez` runs a one-token completion instead."""
    period = min(PROBE_PERIOD_S, options.hang_restart_s)
    threshold = max(1, math.ceil(options.hang_restart_s / period))
    if routes.generation_check:
        path, port = routes.generation_check, options.ports.engine
    else:
        path, port = FORWARDER_LIVENESS_PATH, options.ports.forwarder
    return Probe("liveness", path, port, period, failure_threshold=threshold, timeout_s=period)


def _loopback(options: PlanOptions) -> str:
    return "[::1]" if options.ip_family.value == "ipv6" else "127.0.0.1"


def forwarder_pre_stop(options: PlanOptions) -> tuple[str, ...]:
    """The forwarder's preStop: drain (no new requests, readiness fails), then wait for
    in-flight requests, at most the drain grace."""
    url = f"http://{_loopback(options)}:{options.ports.forwarder}"
    grace = str(options.drain_grace_s)
    return (*options.forwarder_program, "drain", "--url", url, "--grace-s", grace)


def engine_pre_stop(options: PlanOptions, role: Role) -> tuple[str, ...]:
    """An engine's preStop: wait until the group's forwarder has drained, so the engine
    (and on workers, their rank of the leader's generations) stops only after it."""
    if role is Role.LEADER:
        where = ["--url", f"http://{_loopback(options)}:{options.ports.forwarder}"]
    else:
        where = ["--leader-port", str(options.ports.forwarder)]
    grace = str(options.drain_grace_s)
    return (*options.forwarder_program, "wait-drained", *where, "--grace-s", grace)


def common_env(spec: EndpointSpec, options: PlanOptions) -> dict[str, str]:
    env = {
        "NCCL_SOCKET_IFNAME": options.socket_ifname,
        "GLOO_SOCKET_IFNAME": options.socket_ifname,
        "LLM_LAUNCH_ENDPOINT_NAME": spec.name,
        PROGRESS_FILE_ENV: PROGRESS_FILE,
    }
    if spec.chat_template_override is not None:
        # A template is free text (it may even be "--"); the environment carries it intact.
        env["LLM_LAUNCH_CHAT_TEMPLATE"] = spec.chat_template_override
    if spec.recreation:
        # Launch's force_bundle_recreation: a new plan, so every backend recreates the groups.
        env["LLM_LAUNCH_RECREATION"] = str(spec.recreation)
    return env


def startup_command(
    framework: str,
    role: Role,
    spec: EndpointSpec,
    options: PlanOptions,
    *,
    tp_size: int,
    pp_size: int,
) -> tuple[str, ...]:
    """The startup program's argv; extra engine arguments follow `--`, one item each."""
    argv = [
        *options.startup_program,
        framework,
        "--role", role.value,
        "--nnodes", str(spec.nodes_per_worker),
        "--tp-size", str(tp_size),
        "--pp-size", str(pp_size),
        "--engine-port", str(options.ports.engine),
        "--dist-port", str(options.ports.rendezvous),
        f"--model={spec.model_name}",
        f"--served-model-name={spec.served_model_name}",
        "--ip-family", options.ip_family.value,
        "--weights-dir", options.weights_dir,
        "--resolve-timeout", str(options.resolve_timeout_s),
        "--worker-wait-timeout", str(options.worker_wait_timeout_s),
    ]  # fmt: skip
    optional = {
        "--checkpoint-path": spec.checkpoint_path,
        "--quantization": spec.quantize,
        "--cluster-domain": options.cluster_domain,
        "--bind-host": options.bind_host,
    }
    for flag, value in optional.items():
        if value is not None:
            argv.append(f"{flag}={value}")  # `=`: a value starting with '-' stays a value
    extra = render_engine_args(spec.engine_args)
    return (*argv, "--", *extra) if extra else tuple(argv)


def engine_container(
    command: tuple[str, ...],
    env: dict[str, str],
    options: PlanOptions,
    role: Role,
    routes: EngineRoutes,
) -> ContainerPlan:
    ports = {"engine": options.ports.engine}
    probes: tuple[Probe, ...] = ()
    if role is Role.LEADER:
        ports["rendezvous"] = options.ports.rendezvous
        # The leader's budget covers waiting for workers, downloading and loading weights.
        # Liveness starts once the startup probe has passed: a leader that served and
        # then stops generating for hang_restart_s is restarted.
        probes = (
            Probe("startup", routes.health, options.ports.engine, PROBE_PERIOD_S,
                  failure_threshold=max(1, options.startup_budget_s // PROBE_PERIOD_S)),
            generation_liveness(options, routes),
        )  # fmt: skip
    # Workers get no probe: their /health is a dummy that says nothing about the group,
    # and the group's readiness is the leader's real generation check.
    pre_stop = engine_pre_stop(options, role)
    return ContainerPlan(ENGINE_CONTAINER, command, env, ports, probes, pre_stop)


def forwarder_container(
    spec: EndpointSpec, options: PlanOptions, routes: EngineRoutes, engine_api: str
) -> ContainerPlan:
    """The forwarder beside the leader's engine: readiness of the whole group lives here."""
    loopback = _loopback(options)
    # AUTO: the forwarder picks at start, from POD_IP, as the startup program does for the
    # engine; a fixed 0.0.0.0 would be unreachable on an IPv6-only cluster.
    families = {"ipv6": "::", "ipv4": "0.0.0.0", "auto": "auto"}
    host = options.bind_host or families[options.ip_family.value]
    command = [
        *options.forwarder_program,
        "--host", host,
        "--port", str(options.ports.forwarder),
        "--engine-url", f"http://{loopback}:{options.ports.engine}",
        "--engine-api", engine_api,
        "--served-model-name", spec.served_model_name,
        "--max-concurrency", str(options.forwarder_max_concurrency),
    ]  # fmt: skip
    if routes.generation_check:
        command += ["--ready-check-path", routes.generation_check]
    probes = (
        Probe("readiness", "/readyz", options.ports.forwarder, 5, failure_threshold=3),
        Probe("liveness", "/healthz", options.ports.forwarder, 10, failure_threshold=3),
    )
    # The report's path goes in the environment, not a flag, so a backend that moves the
    # report (the local one) sets it once for both processes.
    env = {"LLM_LAUNCH_ENDPOINT_NAME": spec.name, PROGRESS_FILE_ENV: PROGRESS_FILE}
    return ContainerPlan(
        FORWARDER_CONTAINER,
        tuple(command),
        env,
        {"http": options.ports.forwarder},
        probes,
        forwarder_pre_stop(options),
    )


def assemble_plan(
    framework: str,
    spec: EndpointSpec,
    options: PlanOptions,
    routes: EngineRoutes,
    *,
    tp_size: int,
    pp_size: int,
    engine_api: str,
) -> LaunchPlan:
    """The plan every framework shares the shape of: a leader (engine + forwarder) and,
    for multi-node endpoints, one worker template for every other rank."""
    env = common_env(spec, options)

    def role_plan(role: Role) -> RolePlan:
        command = startup_command(framework, role, spec, options, tp_size=tp_size, pp_size=pp_size)
        containers = [engine_container(command, env, options, role, routes)]
        if role is Role.LEADER:
            containers.append(forwarder_container(spec, options, routes, engine_api))
        return RolePlan(role, tuple(containers))

    return LaunchPlan(
        endpoint_name=spec.name,
        framework=framework,
        nodes=spec.nodes_per_worker,
        gpus_per_node=spec.gpus,
        tensor_parallel_size=tp_size,
        pipeline_parallel_size=pp_size,
        ports=options.ports,
        routes=routes,
        served_model_name=spec.served_model_name,
        leader=role_plan(Role.LEADER),
        worker=role_plan(Role.WORKER) if spec.is_multinode else None,
        extra_engine_args=render_engine_args(spec.engine_args),
        hang_restart_s=options.hang_restart_s,
        drain_grace_s=options.drain_grace_s,
    )
