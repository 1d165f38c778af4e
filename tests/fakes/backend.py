"""An in-memory Backend: records what the reconciler asked and reports what a test says."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from llm_launch.backends.base import Observation, ServingPoint
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, LaunchError, UpstreamFailed
from llm_launch.domain.groups import GroupDetail
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus


@dataclass
class FakeBackend:
    name: str = "fake"
    applied: list[tuple[str, int]] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)
    observation: Observation = field(
        default_factory=lambda: Observation(EndpointStatus.READY, "ready", 1, 0)
    )
    fail_apply: LaunchError | None = None
    refuse: list[FieldError] = field(default_factory=list)
    live_ids_seen: set[str] | None = None
    # A slow teardown: it waits until a test (in any thread) sets the gate.
    teardown_gate: threading.Event | None = None
    teardown_failures: int = 0  # the first N teardowns fail, as an unreachable API would
    teardown_attempts: int = 0
    serving: ServingPoint = field(
        default_factory=lambda: ServingPoint("http://fake-forwarder", "fake-workload", 256)
    )
    groups: list[GroupDetail] = field(default_factory=list)  # what group_details reports
    targets_known: bool = True  # what knows_targets says

    def check(self, spec: EndpointSpec) -> list[FieldError]:
        return list(self.refuse)

    async def apply(self, endpoint: Endpoint) -> None:
        if self.fail_apply is not None:
            raise self.fail_apply
        self.applied.append((endpoint.id, endpoint.generation))

    async def observe(self, endpoint: Endpoint) -> Observation:
        return self.observation

    async def teardown(self, endpoint: Endpoint) -> None:
        self.teardown_attempts += 1
        if self.teardown_failures > 0:
            self.teardown_failures -= 1
            raise UpstreamFailed("kubernetes API unreachable")
        # The gate is a threading.Event, opened from a test's thread: polled, not awaited.
        while self.teardown_gate is not None and not self.teardown_gate.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.torn_down.append(endpoint.id)

    async def collect_garbage(self, live_endpoint_ids: set[str]) -> None:
        self.live_ids_seen = set(live_endpoint_ids)

    def targets(self, endpoint: Endpoint) -> list[str]:
        return []

    def knows_targets(self, endpoint: Endpoint) -> bool:
        return self.targets_known

    def serving_point(self, endpoint: Endpoint) -> ServingPoint:
        return self.serving

    def group_details(self, endpoint: Endpoint) -> list[GroupDetail]:
        return list(self.groups)

    async def logs(self, endpoint: Endpoint, group: int, process: str, tail: int) -> str:
        return ""

    async def follow_logs(
        self, endpoint: Endpoint, group: int, process: str, tail: int
    ) -> AsyncIterator[bytes]:
        return _no_lines()

    async def close(self) -> None:
        pass


async def _no_lines() -> AsyncIterator[bytes]:
    return
    yield b""
