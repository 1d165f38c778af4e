"""vLLM plans. Multi-node runs a Ray cluster inside the group: the leader starts the
head and waits for every node, workers join and block, then the leader serves with
tensor-parallel = GPUs per node and pipeline-parallel = nodes, on the same engine port.
"""

from __future__ import annotations

from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.common import assemble_plan
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import EngineRoutes, LaunchPlan

# vLLM has no generation health route; the forwarder checks readiness with a
# one-token completion instead.
ROUTES = EngineRoutes(health="/health", generation_check=None, generate=None)


def plan_vllm(spec: EndpointSpec, options: PlanOptions) -> LaunchPlan:
    return assemble_plan(
        "vllm",
        spec,
        options,
        ROUTES,
        tp_size=max(spec.gpus, 1),
        pp_size=spec.nodes_per_worker,
        engine_api="openai",
    )
