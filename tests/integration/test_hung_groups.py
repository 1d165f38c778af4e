"""A hung group is restarted (issue 9 item 7), on the local backend, with real simulated groups.

A leader that was ready and then fails its generation check (the forwarder's `/readyz`)
for the plan's `hang_restart_s` is recreated, group and all, and the status says why; on
Kubernetes the engine's livenessProbe does the same (tests/unit/kubernetes/
test_render_lifecycle.py). The engine is frozen with SIGSTOP: its process lives, its port
accepts connections, and nothing it is asked ever completes, as with a wedged GPU loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_launch.api.app import make_backend
from llm_launch.backends.base import Observation
from llm_launch.backends.local.backend import SIMULATED_NOTE, LocalBackend
from llm_launch.backends.local.group import GroupPorts
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.groups import CauseKind
from llm_launch.domain.status import EndpointStatus
from llm_launch.settings import Settings
from tests.support.local_groups import simulated_backend, stored_endpoint

HANG_RESTART_S = 3  # short for the test; the default is PlanOptions.hang_restart_s (30 s)


def an_endpoint(**overrides: Any) -> Endpoint:
    return stored_endpoint("end_hang00001", "hangs", **overrides)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    options = {"hang_restart_s": HANG_RESTART_S, "drain_grace_s": 5}
    async with simulated_backend(tmp_path, 43200, an_endpoint(), **options) as backend:
        yield backend


async def observe_until(
    backend: LocalBackend, endpoint: Endpoint, done: Any, what: str, deadline_s: float = 90.0
) -> Observation:
    deadline = asyncio.get_running_loop().time() + deadline_s
    observed = await backend.observe(endpoint)
    while not done(observed):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {observed}")
        await asyncio.sleep(0.2)
        observed = await backend.observe(endpoint)
    return observed


def is_ready(observed: Observation) -> bool:
    return observed.status is EndpointStatus.READY


async def test_a_leader_that_stops_answering_the_generation_check_has_its_group_recreated(
    local: LocalBackend,
) -> None:
    # Single-node: in a multi-node group the workers notice the frozen leader themselves
    # (the simulator's heartbeat) and exit, which is the crash path, not this one.
    endpoint = an_endpoint(min_workers=1, max_workers=1)
    await local.apply(endpoint)
    await observe_until(local, endpoint, is_ready, "the group to be ready")
    group = local._runtimes[endpoint.id].groups[0]
    before = {p.pid for p in group.processes}
    leader = next(p for p in group.processes if p.name == "rank-0")
    os.killpg(leader.pid, signal.SIGSTOP)  # frozen: alive, listening, never answering

    hung = await observe_until(
        local, endpoint,
        lambda o: "stopped answering the generation check" in o.reason,
        "the hang to be noticed",
    )  # fmt: skip
    assert hung.status is EndpointStatus.UPDATE_IN_PROGRESS
    seconds = re.search(r"generation check for (\d+) s; group recreated", hung.reason)
    assert seconds is not None and int(seconds[1]) >= HANG_RESTART_S
    assert local.targets(endpoint) == []  # nothing routes to a hung group

    again = await observe_until(local, endpoint, is_ready, "the recreated group to be ready")
    assert again.reason == f"ready; {SIMULATED_NOTE}"  # the cause is over: history, not status
    (detail,) = local.group_details(endpoint)
    assert (detail.restarts, detail.ready) == (1, True)
    assert detail.last_cause is not None and detail.last_cause.kind is CauseKind.HUNG
    after = {p.pid for p in local._runtimes[endpoint.id].groups[0].processes}
    assert after.isdisjoint(before)  # every process of the group is new
    assert all(_gone(pid) for pid in before)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_the_serve_settings_set_the_hang_and_drain_times_of_both_backends(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url="sqlite://", data_dir=tmp_path, hang_restart_s=7,
                        drain_grace_s=0)  # fmt: skip
    backend = make_backend(settings)
    assert isinstance(backend, LocalBackend)
    try:
        plan = backend._plan(an_endpoint(), GroupPorts(30001, 30002, (30003,)))
    finally:
        await backend.close()
    assert (plan.hang_restart_s, plan.drain_grace_s) == (7, 0)
    kubernetes = settings.plan_options()  # what the Kubernetes backend's config gets
    assert (kubernetes.hang_restart_s, kubernetes.drain_grace_s) == (7, 0)
    defaults = Settings(database_url="sqlite://", data_dir=tmp_path).plan_options()
    assert (defaults.hang_restart_s, defaults.drain_grace_s) == (30, 90)
