"""EndpointRuntime: drives one endpoint's local groups towards its wanted spec.

A small control loop (one asyncio task per endpoint, owned by LocalBackend): restart a
group whose process exited (the whole group, like RecreateGroupOnPodRestart) after a
capped exponential backoff; poll each leader's forwarder `/readyz` (a real generation
check), and recreate a group whose leader, once ready, has failed it for the plan's
`hang_restart_s` (what the engine's livenessProbe does on Kubernetes); scale to
`min_workers` groups; roll a new generation one group at a time, keeping the old group
serving until its replacement is ready.

A group leaving (scale-down, a rollout replacing it, delete) is retired: out of routing
at once, then drained in a thread of its own (the forwarder's preStop hook: no new
requests, in-flight ones finish within the plan's `drain_grace_s`), then stopped, so
the loop keeps supervising the endpoint's other groups meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.group import GroupPorts, ProcessGroup
from llm_launch.domain.endpoint import Endpoint
from llm_launch.engines.plan import LaunchPlan

log = logging.getLogger("llm_launch.backends.local")

TICK_S = 0.25
MAX_BACKOFF_S = 30.0
CRASH_LOOP_FAILURES = 3  # consecutive failures before the endpoint reports UPDATE_FAILED

PlanFactory = Callable[[Endpoint, GroupPorts], LaunchPlan]


def backoff_s(consecutive_failures: int) -> float:
    return min(MAX_BACKOFF_S, 2.0 ** max(0, consecutive_failures - 1))


@dataclass
class EndpointRuntime:
    endpoint: Endpoint
    plan_for: PlanFactory
    capacity: Capacity  # shared by every endpoint's runtime
    log_root: Path
    base_env: Mapping[str, str]
    http: httpx.AsyncClient
    persist: Callable[[EndpointRuntime], None]
    groups: dict[int, ProcessGroup] = field(default_factory=dict)
    surge: ProcessGroup | None = None  # the replacement being rolled in
    plans: dict[int, LaunchPlan] = field(default_factory=dict)  # by group index and generation
    task: asyncio.Task[None] | None = None
    # The loop's blocking steps run in threads, which a cancelled task does not stop:
    # this lock and flag make sure nothing starts a process once stop_all has begun.
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False
    error: str | None = None  # why the last supervision step failed, until one succeeds
    waiting: str | None = None  # "waiting for capacity: ..." while a wanted group cannot start
    retiring: list[ProcessGroup] = field(default_factory=list)  # draining, then stopped
    retirements: list[threading.Thread] = field(default_factory=list)

    # -- what the backend asks -------------------------------------------------------
    def all_groups(self) -> list[ProcessGroup]:
        return [*self.groups.values(), *([self.surge] if self.surge else [])]

    def ready_urls(self) -> list[str]:
        return [g.forwarder_url for g in self.all_groups() if g.ready]

    def recorded_groups(self) -> list[ProcessGroup]:
        """Every group with processes to record, those still draining included."""
        return [*self.all_groups(), *self.retiring]

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._supervise)
                await self._poll_readiness()
                await asyncio.to_thread(self._converge)
                self.error = None
            except Exception as exc:  # e.g. no free ports, or a process that cannot spawn
                log.exception("endpoint %s: supervision step failed", self.endpoint.name)
                self.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(1.0)
            await asyncio.sleep(TICK_S)

    def _supervise(self) -> None:
        with self.lock:
            if not self.stopped:
                self._restart_exited()

    def _restart_exited(self) -> None:
        """Recreate groups that lost a process or whose leader hung, after their backoff."""
        now = time.monotonic()
        for group in self.all_groups():
            if not group.processes:
                if now >= group.next_start_at:
                    self._start(group)
                continue
            exited = group.first_exited()
            if exited is not None:
                line = exited.last_log_line()
                group.last_exit = f"{_role(exited.name)} {exited.describe_exit()}" + (
                    f": {line}" if line else ""
                )
            elif group.hung_for_s is not None:
                # Hung, not crashed: nothing it serves can finish, so no drain either.
                group.last_exit = (
                    "leader stopped answering the generation check for "
                    f"{group.hung_for_s:.0f} s; group recreated"
                )
            else:
                continue
            group.ready = False
            group.restarts += 1
            group.consecutive_failures += 1
            group.stop()
            group.processes = []
            group.next_start_at = time.monotonic() + backoff_s(group.consecutive_failures)
            self.persist(self)

    async def _poll_readiness(self) -> None:
        groups = [g for g in self.all_groups() if g.processes]
        results = await asyncio.gather(*(self._ready(g) for g in groups))
        now = time.monotonic()
        for group, ready in zip(groups, results, strict=True):
            group.ready = ready
            if ready:
                group.ever_ready = True
                group.last_ready_at = now
                group.consecutive_failures = 0
            elif group.ever_ready and now - group.last_ready_at >= self._hang_restart_s(group):
                group.hung_for_s = now - group.last_ready_at  # recreated by _supervise

    def _hang_restart_s(self, group: ProcessGroup) -> int:
        plan = group.plan or self.plan_for(self.endpoint, group.ports)
        return plan.hang_restart_s

    async def _ready(self, group: ProcessGroup) -> bool:
        try:
            response = await self.http.get(f"{group.forwarder_url}/readyz", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _converge(self) -> None:
        with self.lock:
            if not self.stopped:
                self._scale_and_roll()

    def _scale_and_roll(self) -> None:
        """Scale to min_workers and roll groups of an older generation."""
        wanted = self.endpoint.spec.min_workers
        self.waiting = None
        for index in sorted(i for i in self.groups if i >= wanted):
            self._remove(self.groups.pop(index))
        for index in range(wanted):
            if index not in self.groups:
                group = self._new_group(index)
                if group is None:  # waiting for capacity; asked again next tick
                    break
                self.groups[index] = group
                self.persist(self)
        self._roll()
        if self.waiting is None:
            self.capacity.forget(self.endpoint.id)

    def _roll(self) -> None:
        generation = self.endpoint.generation
        if self.surge is not None:
            if self.surge.generation != generation:  # superseded by a newer update
                self._remove(self.surge)
                self.surge = None
            elif self.surge.ready:
                old = self.groups.get(self.surge.index)
                self.groups[self.surge.index] = self.surge
                self.surge = None
                if old is not None:
                    self._remove(old)
            return
        stale = sorted(i for i, g in self.groups.items() if g.generation != generation)
        for index in list(stale):
            group = self.groups[index]
            if group.plan == self.plan_for(self.endpoint, group.ports):
                # Nothing it runs changes (scale, labels, metadata): keep it serving.
                group.generation = generation
                stale.remove(index)
        if stale:
            self.surge = self._new_group(stale[0])
            self.persist(self)

    def _new_group(self, index: int) -> ProcessGroup | None:
        """Start group `index`, or None (and `waiting` says why) when capacity is short."""
        nodes = self.endpoint.spec.nodes_per_worker
        allocated = self.capacity.reserve(self.endpoint.id, nodes)
        if isinstance(allocated, str):
            self.waiting = allocated
            return None
        ports = GroupPorts(allocated[0], allocated[1], tuple(allocated[2:]))
        log_dir = self.log_root / f"group-{index}"
        group = ProcessGroup(self.endpoint.id, index, self.endpoint.generation, ports, log_dir)
        try:
            group.start(
                self.plan_for(self.endpoint, ports), self.base_env, self.endpoint.forwarder_token
            )
        except BaseException:
            # Nothing records a group that never started: give its ports back now, or
            # every retry leaks another set until no owner's group can get one.
            self.capacity.release(self.endpoint.id, nodes, allocated)
            raise
        return group  # the caller records it once it is in place

    def _start(self, group: ProcessGroup) -> None:
        """Restart a group with the plan it was created with (an adopted group, which
        carries none, is always of the current generation)."""
        try:
            plan = group.plan or self.plan_for(self.endpoint, group.ports)
            group.start(plan, self.base_env, self.endpoint.forwarder_token)
        except Exception as exc:
            # Back off like a crash, so a group that cannot spawn is not retried every tick.
            group.consecutive_failures += 1
            group.last_exit = f"could not start: {type(exc).__name__}: {exc}"
            group.next_start_at = time.monotonic() + backoff_s(group.consecutive_failures)
            raise
        self.persist(self)

    def _remove(self, group: ProcessGroup) -> None:
        """Retire `group` (the caller holds the lock and has taken it out of `groups`):
        out of routing now, drained and stopped in a thread of its own."""
        group.ready = False
        self.retiring.append(group)
        self.retirements = [t for t in self.retirements if t.is_alive()]
        thread = threading.Thread(
            target=self._drain_and_stop, args=(group,), daemon=True,
            name=f"drain-{self.endpoint.name}-{group.index}",
        )  # fmt: skip
        self.retirements.append(thread)
        thread.start()
        self.persist(self)

    def _drain_and_stop(self, group: ProcessGroup) -> None:
        try:
            plan = group.plan or self.plan_for(self.endpoint, group.ports)
            group.drain(plan, self.base_env, self.endpoint.forwarder_token)
        except Exception:
            log.exception("endpoint %s: draining group %d failed", self.endpoint.name, group.index)
        finally:
            group.stop()
            with self.lock:
                self.retiring.remove(group)
                self.capacity.release(self.endpoint.id, len(group.ports.engines), group.ports.all)
                self.persist(self)

    def stop_all(self) -> None:
        """Drain and stop every group (delete), returning once all have stopped."""
        with self.lock:
            self.stopped = True
            for group in self.all_groups():
                self._remove(group)
            self.groups.clear()
            self.surge = None
            retirements = list(self.retirements)
        for thread in retirements:
            thread.join()
        with self.lock:
            self.capacity.forget(self.endpoint.id)


def _role(process_name: str) -> str:
    if process_name == "rank-0":
        return "leader (rank 0)"
    if process_name.startswith("rank-"):
        return f"worker rank {process_name.split('-')[1]}"
    return process_name
