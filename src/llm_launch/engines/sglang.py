"""SGLang plans: one server spread over the group, tensor-parallel across every GPU.

For the runbook's case (gpus=8, nodes_per_worker=2) that is `--nnodes 2` and
`--tp-size 16`; rank 0 hosts the rendezvous and serves HTTP, ranks >= 1 join it.
"""

from __future__ import annotations

from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.common import assemble_plan
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import EngineRoutes, LaunchPlan

ROUTES = EngineRoutes(health="/health", generation_check="/health_generate", generate="/generate")


def plan_sglang(spec: EndpointSpec, options: PlanOptions) -> LaunchPlan:
    tp_size = max(spec.gpus, 1) * spec.nodes_per_worker
    return assemble_plan(
        "sglang", spec, options, ROUTES, tp_size=tp_size, pp_size=1, engine_api="sglang"
    )
