"""EndpointRuntime: drives one endpoint's local groups towards its wanted spec.

A small control loop (one asyncio task per endpoint, owned by LocalBackend): recreate a
group whose engine rank exited (the whole group, like RecreateGroupOnPodRestart) after a
capped exponential backoff; restart a forwarder that exited alone, with a backoff of its
own, while the engine ranks keep running (the group is out of routing until its new
forwarder's `/readyz` passes); poll each leader's forwarder `/readyz` (a real generation
check), and recreate a group whose leader, once ready, has failed it for the plan's
`hang_restart_s` (what the engine's livenessProbe does on Kubernetes); scale to
`min_workers` groups; roll a new generation one group at a time, keeping the old group
serving until its replacement is ready.

Every recreation or restart is recorded on the group as a structured `GroupCause` (which
process, exit code or signal, what was seen, when; the failed process's last log lines
only as its excerpt) and logged by the server, one line each.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.group import GroupPorts, ProcessGroup, rank_of
from llm_launch.backends.local.processes import LocalProcess
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.groups import CauseKind, GroupCause
from llm_launch.domain.progress import Phase
from llm_launch.engines.plan import LaunchPlan

log = logging.getLogger("llm_launch.backends.local")

TICK_S = 0.25
MAX_BACKOFF_S = 30.0
CRASH_LOOP_FAILURES = 3  # consecutive failures before the endpoint reports UPDATE_FAILED
STARTUP_ERROR_CHARS = 500  # of a failed startup's report, in the cause

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
    # Set by the backend when the spec changes: an idle runtime (see `idle`) waits on it.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what the backend asks -------------------------------------------------------
    def all_groups(self) -> list[ProcessGroup]:
        return [*self.groups.values(), *([self.surge] if self.surge else [])]

    def ready_urls(self) -> list[str]:
        return [g.forwarder_url for g in self.all_groups() if g.ready]

    def recorded_groups(self) -> list[ProcessGroup]:
        """Every group with processes to record, those still draining included."""
        return [*self.all_groups(), *self.retiring]

    # -- the loop --------------------------------------------------------------------
    def idle(self) -> bool:
        """Nothing runs and nothing is wanted (an endpoint scaled to zero): nothing to
        supervise, poll or converge until the spec changes."""
        return (
            self.endpoint.spec.min_workers == 0
            and not self.groups
            and self.surge is None
            and not self.retiring
        )

    async def run(self) -> None:
        while True:
            if self.idle():
                # No tick while idle: thousands of endpoints scaled to zero would otherwise
                # cost the server's event loop two thread hops each, four times a second.
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                await asyncio.to_thread(self._supervise)
                await self.poll_readiness()
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
        """Recreate groups that lost an engine rank or whose leader hung, restart exited
        forwarders alone, each after its backoff."""
        now = time.monotonic()
        for group in self.all_groups():
            if not group.processes:
                if now >= group.next_start_at:
                    self._start(group)
                continue
            cause = _group_failure(group)
            if cause is not None:
                self._recreate(group, cause)
            else:
                self._tend_forwarder(group, now)

    def _recreate(self, group: ProcessGroup, cause: GroupCause) -> None:
        """Stop the whole group; it starts again once its backoff is over."""
        group.ready = False
        group.restarts += 1
        group.consecutive_failures += 1
        wait = backoff_s(group.consecutive_failures)
        self._record(group, cause, group.restarts, wait)
        group.stop()  # hung, not crashed: nothing it serves can finish, so no drain either
        group.processes = []
        group.next_start_at = time.monotonic() + wait
        self.persist(self)

    def _tend_forwarder(self, group: ProcessGroup, now: float) -> None:
        """Take out a forwarder that exited; start it again (alone) after its backoff."""
        exited = group.forwarder_exited()
        if exited is not None:
            group.ready = False  # out of routing until the new forwarder's /readyz passes
            cause = _exit_cause(CauseKind.FORWARDER_EXITED, exited)
            group.drop_forwarder(exited)
            group.forwarder_restarts += 1
            group.forwarder_failures += 1
            wait = backoff_s(group.forwarder_failures)
            self._record(group, cause, group.forwarder_restarts, wait)
            group.forwarder_next_start_at = now + wait
            self.persist(self)
        elif group.forwarder is None and now >= group.forwarder_next_start_at:
            plan = group.plan or self.plan_for(self.endpoint, group.ports)
            try:
                group.restart_forwarder(plan, self.base_env, self.endpoint.forwarder_token)
            except Exception as exc:
                group.forwarder_failures += 1
                wait = backoff_s(group.forwarder_failures)
                self._record(group, _spawn_cause("forwarder", exc), group.forwarder_restarts, wait)
                group.forwarder_next_start_at = now + wait
                raise
            self.persist(self)

    def _record(self, group: ProcessGroup, cause: GroupCause, count: int, wait: float) -> None:
        group.last_cause = cause
        group.recovered = False
        log.warning(
            "endpoint %s: group %d: %s; starting again in %.0f s",
            self.endpoint.name, group.index, cause.line(count), wait,
        )  # fmt: skip

    async def poll_readiness(self) -> None:
        groups = [g for g in self.all_groups() if g.processes]
        results = await asyncio.gather(*(self._ready(g) for g in groups))
        now = time.monotonic()
        for group, answer in zip(groups, results, strict=True):
            group.ready = answer is True and group.forwarder is not None
            if answer is not None:
                group.awaiting_forwarder = False
            if group.ready:
                group.ever_ready = True
                group.last_ready_at = now
                group.consecutive_failures = 0
                group.forwarder_failures = 0
                group.recovered = True  # its last cause is over: history, not status
            elif group.forwarder is None or group.awaiting_forwarder:
                # Nothing answers for the leader yet: not the leader's hang.
                group.last_ready_at = now
            elif group.ever_ready and now - group.last_ready_at >= self._hang_restart_s(group):
                group.hung_for_s = now - group.last_ready_at  # recreated by _supervise

    def _hang_restart_s(self, group: ProcessGroup) -> int:
        plan = group.plan or self.plan_for(self.endpoint, group.ports)
        return plan.hang_restart_s

    async def _ready(self, group: ProcessGroup) -> bool | None:
        """Whether the leader passes its generation check; None when no forwarder listens."""
        if group.forwarder is None:
            return None
        try:
            response = await self.http.get(f"{group.forwarder_url}/readyz", timeout=5.0)
        except httpx.ConnectError:
            return None
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
            wait = backoff_s(group.consecutive_failures)
            self._record(group, _spawn_cause(group.spawning, exc), group.restarts, wait)
            group.next_start_at = time.monotonic() + wait
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


def _group_failure(group: ProcessGroup) -> GroupCause | None:
    """Why the whole group must be recreated now (an engine rank exited, or the leader
    hung), or None."""
    exited = group.engine_exited()
    if exited is not None:
        cause = _exit_cause(CauseKind.EXITED, exited)
        report = group.progress_reports().get(rank_of(exited.name))
        if report is not None and report.phase is Phase.FAILED and report.detail:
            # The startup program's own structured word on why (a fetch that failed, say).
            detail = report.detail[:STARTUP_ERROR_CHARS]
            cause = replace(cause, saw=f"{cause.saw}: startup failed: {detail}")
        return cause
    if group.hung_for_s is None:
        return None
    leader = next((p for p in group.processes if p.name == "rank-0"), None)
    return GroupCause(
        CauseKind.HUNG, "rank-0",
        f"stopped answering the generation check for {group.hung_for_s:.0f} s",
        datetime.now(UTC), excerpt=leader.log_excerpt() if leader else None,
    )  # fmt: skip


def _exit_cause(kind: CauseKind, process: LocalProcess) -> GroupCause:
    code, signal, saw = process.exit_facts()
    return GroupCause(
        kind, process.name, saw, datetime.now(UTC),
        exit_code=code, signal=signal, excerpt=process.log_excerpt(),
    )  # fmt: skip


def _spawn_cause(process: str | None, exc: Exception) -> GroupCause:
    return GroupCause(
        CauseKind.COULD_NOT_START, process, f"{type(exc).__name__}: {exc}", datetime.now(UTC)
    )
