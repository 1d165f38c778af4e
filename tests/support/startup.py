"""Run the real startup program (`llm-launch-startup`) from a launch plan's container command.

Used by tests/conformance/ (with `--dry-run`) and tests/multihost/ (inside network
namespaces). The plan's command starts with `llm-launch-startup`; here it becomes
`<this interpreter> -m llm_launch.runtime.startup`, the same program without relying on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.engines.common import ENGINE_CONTAINER
from llm_launch.engines.plan import ContainerPlan, LaunchPlan
from llm_launch.engines.planner import plan_launch

STARTUP_PROGRAM = "llm-launch-startup"
STARTUP_MODULE = (sys.executable, "-m", "llm_launch.runtime.startup")
# Variables of the test runner's own environment that would change what the startup does.
_POD_ENV_PREFIXES = ("LWS_", "POD_", "LLM_LAUNCH_", "SGLANG_", "NCCL_", "GLOO_")


def plan_for(body: Mapping[str, Any]) -> LaunchPlan:
    return plan_launch(build_spec(body, load_hardware_catalog()))


def engine_container(plan: LaunchPlan, role: str) -> ContainerPlan:
    role_plan = plan.leader if role == "leader" else plan.worker
    assert role_plan is not None, f"{plan.endpoint_name} has no {role} pods"
    return role_plan.container(ENGINE_CONTAINER)


def startup_argv(command: Sequence[str], *options: str) -> list[str]:
    """The container command, with the console script replaced by `python -m` of its module
    and `options` added to the startup's own (before any `-- extra engine args`; a later
    option overrides the plan's)."""
    assert command[0] == STARTUP_PROGRAM, f"not a startup command: {list(command)}"
    argv = [*STARTUP_MODULE, *command[1:]]
    split = argv.index("--") if "--" in argv else len(argv)
    return [*argv[:split], *options, *argv[split:]]


@dataclass(frozen=True)
class Pod:
    """What LeaderWorkerSet and the downward API give one pod of a group."""

    ip: str
    leader_address: str | None = None  # LWS_LEADER_ADDRESS; None for single-node Deployments
    worker_index: int = 0
    group_size: int = 1

    def env(self, container: ContainerPlan, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_POD_ENV_PREFIXES)}
        env = {**base, **container.env, "POD_IP": self.ip, **extra}
        if self.leader_address is not None:
            env |= {
                "LWS_LEADER_ADDRESS": self.leader_address,
                "LWS_WORKER_INDEX": str(self.worker_index),
                "LWS_GROUP_SIZE": str(self.group_size),
            }
        return env


def dry_run(container: ContainerPlan, pod: Pod, timeout: float = 30) -> dict[str, Any]:
    """The startup program's `--dry-run` document for this pod: argv, env, addresses."""
    result = subprocess.run(
        startup_argv(container.command, "--dry-run"),
        env=pod.env(container),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"startup --dry-run exited {result.returncode} for {pod}:\n{result.stderr}"
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document
