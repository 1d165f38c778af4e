"""LocalBackend: the embedded default backend; runs endpoints as local process groups.

The reconciler (services/reconciler.py) calls apply/observe/teardown; the inference
router asks `targets` for the forwarders of ready groups, the endpoint service asks
`serving_point` for those of running ones and `group_details` for each group's processes,
phase, restarts and last cause (GET and list; worded by `status.py`, which also words the
status reasons). Group records are written to
`<data_dir>/local-backend/<endpoint id>.json`, so a restarted server adopts the groups
it started (or stops them), and never leaves orphan processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from llm_launch.backends.base import Observation, ServingPoint
from llm_launch.backends.local import status
from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.controller import CRASH_LOOP_FAILURES, EndpointRuntime
from llm_launch.backends.local.engine_mode import resolve_engine_mode
from llm_launch.backends.local.environment import child_environment
from llm_launch.backends.local.files import private_dir, write_private
from llm_launch.backends.local.group import GroupPorts, ProcessGroup, stop_recorded_processes
from llm_launch.backends.local.log_follow import follow_file
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.engine_flags import binds_a_port, engine_flag
from llm_launch.domain.errors import FieldError, NotFound
from llm_launch.domain.frameworks import InferenceFramework
from llm_launch.domain.groups import GroupDetail
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily, LaunchPlan, Ports
from llm_launch.engines.planner import plan_launch

SIMULATED_NOTE = (
    "simulated engine (no GPU or engine package here; weights fetched only where reachable)"
)


class LocalBackend:
    name = "local"

    def __init__(
        self,
        data_dir: Path,
        engine_mode: str,
        ports: PortAllocator | None = None,
        checkpoint_roots: tuple[PurePosixPath, ...] = (),
        pass_env: tuple[str, ...] = (),
        max_processes: int | None = None,
        hang_restart_s: int | None = None,
        drain_grace_s: int | None = None,
    ) -> None:
        self.engine_mode = engine_mode  # "simulated" or "real"
        self._pass_env = pass_env  # --pass-env: server variables spawned processes also get
        # The launch plan's hang and drain settings (None: PlanOptions' defaults, the same
        # as the Kubernetes backend's).
        defaults = PlanOptions()
        self._hang_restart_s = hang_restart_s or defaults.hang_restart_s
        self._drain_grace_s = defaults.drain_grace_s if drain_grace_s is None else drain_grace_s
        self._max_concurrency = defaults.forwarder_max_concurrency  # each forwarder's limit
        # Passed to every process: the startup program refuses a local checkpoint whose real
        # path (links resolved) leaves them, which the API's text-only check cannot see.
        self._checkpoint_roots = ",".join(str(root) for root in checkpoint_roots)
        self._data_dir = data_dir
        self._state_dir = data_dir / "local-backend"
        self._ports = ports or PortAllocator()
        # Shared by every endpoint: groups start only within it, fairly (see capacity.py).
        self._capacity = Capacity(self._ports, max_processes)
        self._runtimes: dict[str, EndpointRuntime] = {}
        self._tombstones: set[str] = set()
        self._records = self._load_records()
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=32))

    # -- the Backend contract ----------------------------------------------------------
    def check(self, spec: EndpointSpec) -> list[FieldError]:
        # Every valid spec runs here (simulated where no GPU exists) if it fits at all.
        return _port_flag_errors(spec) + self._capacity.check(spec)

    async def apply(self, endpoint: Endpoint) -> None:
        if endpoint.id in self._tombstones:
            return
        runtime = self._runtimes.get(endpoint.id)
        if runtime is None:
            runtime = self._new_runtime(endpoint)
            self._runtimes[endpoint.id] = runtime
            self._adopt(runtime)
            if runtime.groups:
                # Adopted groups (a restarted server) are asked whether they serve before
                # this pass reads the endpoint's status and ready targets: unpolled, they
                # would count as not ready, and the targets stored for the gateways would
                # be cleared until the next pass while the groups kept serving.
                await runtime.poll_readiness()
            runtime.task = asyncio.create_task(
                runtime.run(), name=f"local-endpoint-{endpoint.name}"
            )
        elif runtime.endpoint.generation != endpoint.generation:
            runtime.endpoint = endpoint
            runtime.wake.set()  # an idle runtime looks again

    async def observe(self, endpoint: Endpoint) -> Observation:
        runtime = self._runtimes.get(endpoint.id)
        if runtime is None:
            return Observation(
                EndpointStatus.UPDATE_IN_PROGRESS, "not started yet", 0, endpoint.spec.min_workers
            )
        return observe_runtime(runtime, self._mode(endpoint))

    async def teardown(self, endpoint: Endpoint) -> None:
        self._tombstones.add(endpoint.id)
        runtime = self._runtimes.pop(endpoint.id, None)
        if runtime is not None:
            if runtime.task is not None:
                runtime.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task
            await asyncio.to_thread(runtime.stop_all)
        for record in self._records.pop(endpoint.id, []):
            await asyncio.to_thread(stop_recorded_processes, record)
        self._state_path(endpoint.id).unlink(missing_ok=True)
        # Its logs go with it (they hold its owner's prompts and engine output).
        await asyncio.to_thread(shutil.rmtree, self._log_root(endpoint), True)

    async def collect_garbage(self, live_endpoint_ids: set[str]) -> None:
        """Stop recorded groups of endpoints that no longer exist (deleted while we were down)."""
        for endpoint_id in [e for e in self._records if e not in live_endpoint_ids]:
            for record in self._records.pop(endpoint_id):
                await asyncio.to_thread(stop_recorded_processes, record)
            self._state_path(endpoint_id).unlink(missing_ok=True)
        await asyncio.to_thread(self._remove_logs_except, live_endpoint_ids)

    def targets(self, endpoint: Endpoint) -> list[str]:
        runtime = self._runtimes.get(endpoint.id)
        return runtime.ready_urls() if runtime else []

    def knows_targets(self, endpoint: Endpoint) -> bool:
        return True  # adopted groups are polled in `apply`, before anyone asks

    def serving_point(self, endpoint: Endpoint) -> ServingPoint:
        """The forwarders of the endpoint's running groups (ready or not), by group; no
        workload has a name here, the groups being plain processes."""
        runtime = self._runtimes.get(endpoint.id)
        groups = runtime.all_groups() if runtime else []
        urls = [g.forwarder_url for g in sorted(groups, key=lambda g: g.index) if g.processes]
        return ServingPoint(",".join(urls), None, self._max_concurrency)

    def group_details(self, endpoint: Endpoint) -> list[GroupDetail]:
        """Each group of the endpoint (a rollout's replacement and groups still draining
        included), by index."""
        runtime = self._runtimes.get(endpoint.id)
        if runtime is None:
            return []
        now = time.monotonic()
        details = [status.detail(g, now) for g in runtime.all_groups()]
        details += [status.detail(g, now, draining=True) for g in list(runtime.retiring)]
        return sorted(details, key=lambda d: (d.index, d.generation or 0))

    async def logs(self, endpoint: Endpoint, group: int, process: str, tail: int) -> str:
        return await asyncio.to_thread(_tail, self._log_path(endpoint, group, process), tail)

    async def follow_logs(
        self, endpoint: Endpoint, group: int, process: str, tail: int
    ) -> AsyncIterator[bytes]:
        """`tail -F` of the log: through the process's restarts, until the endpoint goes."""
        return follow_file(self._log_path(endpoint, group, process), tail)

    def _log_path(self, endpoint: Endpoint, group: int, process: str) -> Path:
        path = self._log_root(endpoint) / f"group-{group}" / f"{process}.log"
        if not path.exists():
            raise NotFound(f"no log for group {group}, {process} of endpoint {endpoint.name!r}")
        return path

    async def close(self) -> None:
        """Stop supervising; the groups keep serving and are adopted by the next server."""
        for runtime in self._runtimes.values():
            if runtime.task is not None:
                runtime.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task
            with runtime.lock:  # a step still running in its thread finishes first
                self._persist(runtime)
        await self._http.aclose()

    # -- helpers -------------------------------------------------------------------------
    def _new_runtime(self, endpoint: Endpoint) -> EndpointRuntime:
        return EndpointRuntime(
            endpoint=endpoint,
            plan_for=self._plan,
            capacity=self._capacity,
            log_root=self._log_root(endpoint),
            base_env=self._base_env(self._mode(endpoint)),
            http=self._http,
            persist=self._persist,
        )

    def _adopt(self, runtime: EndpointRuntime) -> None:
        for record in self._records.pop(runtime.endpoint.id, []):
            group = None
            if int(record["generation"]) == runtime.endpoint.generation:
                group = ProcessGroup.adopt(record)
            if group is None or group.index in runtime.groups:
                stop_recorded_processes(record)
                continue
            self._capacity.adopt(runtime.endpoint.id, len(group.ports.engines), group.ports.all)
            runtime.groups[group.index] = group

    def _plan(self, endpoint: Endpoint, ports: GroupPorts) -> LaunchPlan:
        options = PlanOptions(
            ports=Ports(
                engine=ports.engines[0], rendezvous=ports.rendezvous, forwarder=ports.forwarder
            ),
            socket_ifname="lo",
            ip_family=IpFamily.IPV4,
            bind_host="127.0.0.1",
            weights_dir=str(self._data_dir / "weights"),
            worker_wait_timeout_s=60,
            resolve_timeout_s=30,
            startup_program=(sys.executable, "-m", "llm_launch.runtime.startup"),
            forwarder_program=(sys.executable, "-m", "llm_launch.runtime.forwarder"),
            hang_restart_s=self._hang_restart_s,
            drain_grace_s=self._drain_grace_s,
            forwarder_max_concurrency=self._max_concurrency,
        )
        return plan_launch(endpoint.spec, options)

    def _mode(self, endpoint: Endpoint) -> str:
        return resolve_engine_mode(self.engine_mode, endpoint.spec.inference_framework)

    def _base_env(self, mode: str) -> dict[str, str]:
        # An allow-list, never a copy: the server's environment holds every owner's key.
        env = child_environment(os.environ, self._pass_env)
        env["LLM_LAUNCH_ENGINE_MODE"] = mode
        env["LLM_LAUNCH_CHECKPOINT_ROOTS"] = self._checkpoint_roots
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _log_root(self, endpoint: Endpoint) -> Path:
        return self._data_dir / "logs" / f"{endpoint.name}-{endpoint.id[-8:]}"

    def _remove_logs_except(self, live_endpoint_ids: set[str]) -> None:
        """Remove log folders (`<name>-<last 8 of id>`) of endpoints that no longer exist."""
        live = {endpoint_id[-8:] for endpoint_id in live_endpoint_ids}
        root = self._data_dir / "logs"
        for folder in root.iterdir() if root.is_dir() else []:
            if folder.is_dir() and folder.name.rpartition("-")[2] not in live:
                shutil.rmtree(folder, ignore_errors=True)

    def _state_path(self, endpoint_id: str) -> Path:
        return self._state_dir / f"{endpoint_id}.json"

    def _persist(self, runtime: EndpointRuntime) -> None:
        private_dir(self._state_dir)
        records = [g.to_record() for g in runtime.recorded_groups() if g.processes]
        write_private(self._state_path(runtime.endpoint.id), json.dumps({"groups": records}))

    def _load_records(self) -> dict[str, list[dict[str, Any]]]:
        records: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self._state_dir.glob("*.json")) if self._state_dir.exists() else []:
            try:
                records[path.stem] = json.loads(path.read_text())["groups"]
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
        return records


def _port_flag_errors(spec: EndpointSpec) -> list[FieldError]:
    """Every local group shares this machine's network, and the backend hands out each
    port: an engine that binds one of its own choosing could take another owner's."""
    framework = InferenceFramework(spec.inference_framework)  # the spec is validated
    return [
        FieldError(
            f"engine_args.{key}",
            f"{flag} chooses how the engine binds ports, and the local backend assigns every "
            "port itself (its groups share this machine's network); leave it out",
        )
        for key in spec.engine_args
        if binds_a_port(flag := engine_flag(key, framework))
    ]


def observe_runtime(runtime: EndpointRuntime, engine_mode: str) -> Observation:
    endpoint = runtime.endpoint
    wanted = endpoint.spec.min_workers
    serving = [g for g in runtime.groups.values() if g.ready]
    available = min(len(serving), wanted)
    unavailable = wanted - available
    if runtime.error is not None:
        reason = f"the local backend cannot run this endpoint: {runtime.error}"
        return Observation(EndpointStatus.UPDATE_FAILED, reason, available, unavailable)
    now = time.monotonic()
    current = sorted(
        (g for g in runtime.all_groups() if g.generation == endpoint.generation),
        key=lambda g: g.index,
    )
    failing = [g for g in current if _crash_looping(g)]
    if failing:
        reason = status.crash_loop_reason(failing[0], now)
        return Observation(EndpointStatus.UPDATE_FAILED, reason, available, unavailable)
    settled = runtime.surge is None and all(
        g.generation == endpoint.generation for g in runtime.groups.values()
    )
    if settled and len(serving) == wanted:
        # The history of restarts is in GET's per-group detail: a reason says what is now.
        reason = f"ready; {SIMULATED_NOTE}" if engine_mode == "simulated" else "ready"
        if wanted == 0:
            reason = "scaled to zero (min_workers=0); the local backend does not autoscale"
        return Observation(EndpointStatus.READY, reason, available, unavailable)
    waiting = next((g for g in current if not g.ready), None)
    reason = status.reason(waiting, now) if waiting else "rolling update in progress"
    if runtime.waiting is not None:  # a wanted group (or the roll's next one) cannot start yet
        reason = f"{runtime.waiting} ({len(runtime.groups)} of {wanted} groups started)"
    if engine_mode == "simulated":
        reason += f" [{SIMULATED_NOTE}]"
    return Observation(EndpointStatus.UPDATE_IN_PROGRESS, reason, available, unavailable)


def _crash_looping(group: ProcessGroup) -> bool:
    failures = max(group.consecutive_failures, group.forwarder_failures)
    return failures >= CRASH_LOOP_FAILURES


def _tail(path: Path, lines: int) -> str:
    with path.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - 256 * 1024))
        text = log.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + "\n"
