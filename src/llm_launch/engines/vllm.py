"""vLLM plans. Multi-node runs a Ray cluster inside the group: the leader starts the
head and waits for every node, workers join and block, then the leader serves with
tensor-parallel = GPUs per node and pipeline-parallel = nodes, on the same engine port.
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

# vLLM has no generation health route; the forwarder checks readiness with a
# one-token completion instead.
ROUTES = EngineRoutes(health="/health", generation_check=None, generate=None)


def plan_vllm(spec: EndpointSpec, options: PlanOptions) -> LaunchPlan:
    tp_size, pp_size = max(spec.gpus, 1), spec.nodes_per_worker
    env = common_env(spec, options)

    def role_plan(role: Role) -> RolePlan:
        command = startup_command("vllm", role, spec, options, tp_size=tp_size, pp_size=pp_size)
        containers = [engine_container(command, env, options, role, ROUTES)]
        if role is Role.LEADER:
            containers.append(forwarder_container(spec, options, ROUTES, engine_api="openai"))
        return RolePlan(role, tuple(containers))

    return LaunchPlan(
        endpoint_name=spec.name,
        framework="vllm",
        nodes=spec.nodes_per_worker,
        gpus_per_node=spec.gpus,
        tensor_parallel_size=tp_size,
        pipeline_parallel_size=pp_size,
        ports=options.ports,
        routes=ROUTES,
        served_model_name=spec.model_name,
        leader=role_plan(Role.LEADER),
        worker=role_plan(Role.WORKER) if spec.is_multinode else None,
        extra_engine_args=render_engine_args(spec.engine_args),
    )
