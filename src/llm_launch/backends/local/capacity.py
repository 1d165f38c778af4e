"""Capacity of the local backend: process slots and ports, shared fairly by all endpoints.

Every EndpointRuntime asks `reserve` before it starts a group and gives the group's share
back with `release` when the group goes. A group gets all it needs (its processes and
ports) or nothing, so no endpoint holds capacity for a group that cannot start. When
capacity is short, the endpoint waits ("waiting for capacity: ...") instead of failing,
and fairness decides who goes first: an endpoint may not take what another waiting
endpoint running fewer groups needs, so one owner's huge endpoint never keeps another
owner's small one from starting. `check` refuses, before anything is stored, a spec
that could never fit at all.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from llm_launch.backends.local.ports import PortAllocator, PortsExhausted
from llm_launch.domain.errors import FieldError
from llm_launch.domain.spec import EndpointSpec

WAITER_TTL_S = 5.0  # a waiting endpoint asks again every tick; one that stopped is forgotten


def default_max_processes() -> int:
    """8 processes per CPU, at least 16: simulated groups are light, real ones use GPUs."""
    return max(16, 8 * (os.cpu_count() or 1))


def group_processes(nodes: int) -> int:
    return nodes + 1  # every rank, and the leader's forwarder


def group_ports(nodes: int) -> int:
    return nodes + 2  # one engine port per rank, the rendezvous and the forwarder


@dataclass
class _Waiter:
    processes: int
    since: float


class Capacity:
    def __init__(self, ports: PortAllocator, max_processes: int | None = None) -> None:
        self.ports = ports
        self.max_processes = max_processes or default_max_processes()
        self._used = 0
        self._groups: dict[str, int] = {}  # endpoint id -> groups it holds
        self._waiting: dict[str, _Waiter] = {}
        self._lock = threading.Lock()

    def check(self, spec: EndpointSpec) -> list[FieldError]:
        """What of a valid spec could never run here, however idle the machine."""
        nodes, groups = spec.nodes_per_worker, spec.min_workers
        processes, ports = group_processes(nodes), group_ports(nodes)
        errors = []
        if groups * processes > self.max_processes:
            message = (
                f"{groups} group(s) of {processes} processes need more than the local backend "
                f"runs at once ({self.max_processes}, --local-max-processes)"
            )
            errors.append(FieldError("min_workers", message))
        if groups * ports > self.ports.size:
            message = (
                f"{groups} group(s) of {ports} ports need more than the "
                f"{self.ports.size} ports of --local-ports {self.ports.describe()}"
            )
            errors.append(FieldError("min_workers", message))
        return errors

    def reserve(self, endpoint_id: str, nodes: int) -> list[int] | str:
        """The ports of one more group of `endpoint_id`, or why it must wait for them."""
        processes = group_processes(nodes)
        with self._lock:
            now = time.monotonic()
            self._forget_stale(now)
            free = self.max_processes - self._used
            if processes > free:
                reason = f"a group needs {processes} processes, {free} of {self.max_processes} free"
            elif (ahead := self._ahead_of(endpoint_id, processes, free)) is not None:
                reason = f"yielding to an endpoint running fewer groups ({ahead} processes)"
            else:
                try:
                    ports = self.ports.allocate(group_ports(nodes))
                except PortsExhausted as exc:
                    reason = str(exc)
                else:
                    self._waiting.pop(endpoint_id, None)
                    self._take(endpoint_id, processes)
                    return ports
            waiter = self._waiting.setdefault(endpoint_id, _Waiter(processes, now))
            waiter.processes, waiter.since = processes, now
            return f"waiting for capacity: {reason}"

    def adopt(self, endpoint_id: str, nodes: int, ports: list[int]) -> None:
        """Count a group that already runs (adopted after a restart), even beyond the limit."""
        with self._lock:
            self.ports.reserve(ports)
            self._take(endpoint_id, group_processes(nodes))

    def release(self, endpoint_id: str, nodes: int, ports: list[int]) -> None:
        with self._lock:
            self.ports.release(ports)
            self._used -= group_processes(nodes)
            held = self._groups.get(endpoint_id, 0) - 1
            if held > 0:
                self._groups[endpoint_id] = held
            else:
                self._groups.pop(endpoint_id, None)

    def forget(self, endpoint_id: str) -> None:
        """The endpoint waits for nothing any more (deleted, or scaled down)."""
        with self._lock:
            self._waiting.pop(endpoint_id, None)

    def _take(self, endpoint_id: str, processes: int) -> None:
        self._used += processes
        self._groups[endpoint_id] = self._groups.get(endpoint_id, 0) + 1

    def _ahead_of(self, endpoint_id: str, processes: int, free: int) -> int | None:
        """What a waiting endpoint running fewer groups needs, if taking `processes`
        now would leave it without (it fits now, and goes first)."""
        held = self._groups.get(endpoint_id, 0)
        for other, waiter in self._waiting.items():
            if other == endpoint_id or self._groups.get(other, 0) >= held:
                continue
            if waiter.processes <= free < waiter.processes + processes:
                return waiter.processes
        return None

    def _forget_stale(self, now: float) -> None:
        for other in [o for o, w in self._waiting.items() if now - w.since > WAITER_TTL_S]:
            del self._waiting[other]
