"""plan_launch: the one entry point from a validated EndpointSpec to its LaunchPlan."""

from __future__ import annotations

from collections.abc import Callable

from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.frameworks import InferenceFramework
from llm_launch.domain.spec import EndpointSpec
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import LaunchPlan
from llm_launch.engines.sglang import plan_sglang
from llm_launch.engines.vllm import plan_vllm

_PLANNERS: dict[str, Callable[[EndpointSpec, PlanOptions], LaunchPlan]] = {
    InferenceFramework.SGLANG: plan_sglang,
    InferenceFramework.VLLM: plan_vllm,
}


def plan_launch(spec: EndpointSpec, options: PlanOptions | None = None) -> LaunchPlan:
    """Pure: the same spec and options always give the same plan."""
    options = options or PlanOptions()
    options.check()
    planner = _PLANNERS.get(spec.inference_framework)
    if planner is None:
        raise InvalidRequest(
            [FieldError("inference_framework", f"no launch plan for {spec.inference_framework!r}")]
        )
    return planner(spec, options)
