"""The local backend's rules without processes: backoff, status from group states, flags."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llm_launch.backends.local.backend import observe_runtime
from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.controller import (
    MAX_BACKOFF_S,
    TICK_S,
    EndpointRuntime,
    backoff_s,
)
from llm_launch.backends.local.group import GroupPorts, ProcessGroup, replace_flag
from llm_launch.backends.local.ports import PortAllocator, PortsExhausted, port_is_free
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body


def an_endpoint(generation: int = 1, **overrides: Any) -> Endpoint:
    now = datetime.now(UTC)
    spec = build_spec(
        endpoint_body(inference_framework="sglang", **overrides), load_hardware_catalog()
    )
    return Endpoint(
        "end_1", "alice", spec, EndpointStatus.UPDATE_PENDING, None, generation, now, now
    )


def a_group(index: int = 0, generation: int = 1, **state: Any) -> ProcessGroup:
    group = ProcessGroup("end_1", index, generation, GroupPorts(1, 2, (3,)), Path("/tmp"))
    for key, value in state.items():
        setattr(group, key, value)
    return group


def runtime(endpoint: Endpoint, *groups: ProcessGroup) -> EndpointRuntime:
    return EndpointRuntime(
        endpoint=endpoint, plan_for=lambda e, p: None, capacity=Capacity(PortAllocator()),  # type: ignore[arg-type,return-value]
        log_root=Path("/tmp"), base_env={}, http=None, persist=lambda r: None,  # type: ignore[arg-type]
        groups={g.index: g for g in groups},
    )  # fmt: skip


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(20) == MAX_BACKOFF_S


def test_ready_when_every_wanted_group_of_the_current_generation_is_ready() -> None:
    seen = observe_runtime(runtime(an_endpoint(), a_group(ready=True)), "simulated")
    assert seen.status is EndpointStatus.READY
    assert (seen.available_workers, seen.unavailable_workers) == (1, 0)
    assert "simulated engine" in (seen.reason or "")


def test_a_group_of_an_older_generation_keeps_the_endpoint_in_progress() -> None:
    seen = observe_runtime(runtime(an_endpoint(generation=2), a_group(ready=True)), "real")
    assert seen.status is EndpointStatus.UPDATE_IN_PROGRESS
    assert seen.available_workers == 1  # it still serves during the roll


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ("s", "--engine-port", "5005", "--", "--port", "1"),
            ("s", "--engine-port", "7", "--", "--port", "1"),
        ),
        (
            ("s", "--", "--engine-port", "1"),
            ("s", "--engine-port", "7", "--", "--engine-port", "1"),
        ),
        (("s",), ("s", "--engine-port", "7")),
    ],
)
def test_replace_flag_touches_only_the_startup_arguments(
    command: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert replace_flag(command, "--engine-port", "7") == expected


def always_free(host: str, port: int) -> bool:
    return True


def test_ports_are_never_handed_out_twice() -> None:
    allocator = PortAllocator(first=41000, last=41009, is_free=always_free)
    first, second = allocator.allocate(4), allocator.allocate(4)
    assert not set(first) & set(second)
    with pytest.raises(PortsExhausted, match="no 4 free ports in 41000-41009"):
        allocator.allocate(4)
    allocator.release(first)
    third = allocator.allocate(4)
    assert not set(third) & set(second)
    assert set(third) <= set(first) | {41008, 41009}


def test_ports_held_by_other_programs_are_skipped() -> None:
    busy = {41001, 41003}
    allocator = PortAllocator(first=41000, last=41009, is_free=lambda h, p: p not in busy)
    assert allocator.allocate(4) == [41000, 41002, 41004, 41005]


def test_the_bind_probe_sees_a_listening_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert not port_is_free("127.0.0.1", held.getsockname()[1])


def test_a_supervision_error_is_update_failed_with_its_cause() -> None:
    broken = runtime(an_endpoint())
    broken.error = "PortsExhausted: no 3 free ports in 20000-29999"
    seen = observe_runtime(broken, "real")
    assert seen.status is EndpointStatus.UPDATE_FAILED
    assert "no 3 free ports" in (seen.reason or "")


def test_an_endpoint_scaled_to_zero_costs_no_tick_until_its_spec_changes() -> None:
    """Thousands of stored endpoints with min_workers 0 must not each wake the server's
    event loop four times a second (bench/gateway_scaling.py's p99 part found serve's
    inference unusable at 10,000 of them)."""

    async def main() -> tuple[int, int]:
        idle = runtime(an_endpoint(min_workers=0))
        steps: list[str] = []
        idle._supervise = lambda: steps.append("supervise")  # type: ignore[method-assign]
        idle._converge = lambda: steps.append("converge")  # type: ignore[method-assign]

        async def no_poll() -> None:
            steps.append("poll")

        idle.poll_readiness = no_poll  # type: ignore[method-assign]
        idle.task = asyncio.create_task(idle.run())
        await asyncio.sleep(4 * TICK_S)
        while_idle = len(steps)
        idle.endpoint = an_endpoint(generation=2, min_workers=1)  # what LocalBackend.apply does
        idle.wake.set()
        await asyncio.sleep(2 * TICK_S)
        idle.task.cancel()
        return while_idle, steps.count("supervise")

    while_idle, after_waking = asyncio.run(main())
    assert while_idle == 0
    assert after_waking >= 1
