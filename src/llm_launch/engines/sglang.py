"""SGLang plans: one server spread over the group, tensor-parallel across every GPU.

For the runbook's case (gpus=8, nodes_per_worker=2) that is `--nnodes 2` and
`--tp-size 16`; rank 0 hosts the rendezvous and serves HTTP, ranks >= 1 join it.
"""

from __future__ import annotations

from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.args import render_engine_args
from llm_launch.engines.common import (
    common_env,
    engine_container,
    forwarder_container,
    startup_command,
)
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import EngineRoutes, LaunchPlan, Role, RolePlan

ROUTES = EngineRoutes(health="/health", generation_check="/health_generate", generate="/generate")


def plan_sglang(spec: EndpointSpec, options: PlanOptions) -> LaunchPlan:
    tp_size = max(spec.gpus, 1) * spec.nodes_per_worker
    env = common_env(spec, options)

    def role_plan(role: Role) -> RolePlan:
        command = startup_command("sglang", role, spec, options, tp_size=tp_size, pp_size=1)
        containers = [engine_container(command, env, options, role, ROUTES)]
        if role is Role.LEADER:
            containers.append(forwarder_container(spec, options, ROUTES, engine_api="sglang"))
        return RolePlan(role, tuple(containers))

    return LaunchPlan(
        endpoint_name=spec.name,
        framework="sglang",
        nodes=spec.nodes_per_worker,
        gpus_per_node=spec.gpus,
        tensor_parallel_size=tp_size,
        pipeline_parallel_size=1,
        ports=options.ports,
        routes=ROUTES,
        served_model_name=spec.model_name,
        leader=role_plan(Role.LEADER),
        worker=role_plan(Role.WORKER) if spec.is_multinode else None,
        extra_engine_args=render_engine_args(spec.engine_args),
    )
