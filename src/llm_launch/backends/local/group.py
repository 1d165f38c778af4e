"""A replica group as local processes: rank 0 (engine + forwarder) and ranks 1..n-1.

Built from the same LaunchPlan the Kubernetes backend renders; only the addressing
differs: every rank is on 127.0.0.1, so each rank's engine gets its own port, and the
LWS environment (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX) is set here
the way the LeaderWorkerSet controller sets it in pods. The forwarder alone gets the
endpoint's token (LLM_LAUNCH_FORWARDER_TOKEN), in its environment: never on a command
line, which any local user can read, and never in an engine rank's environment.

Each rank's startup program reports its progress (phase, weights fetched) in a file of
the group's log folder, `rank-N.progress.json` (LLM_LAUNCH_PROGRESS_FILE, removed before
each start so that no report of an earlier run is read); the forwarder is given rank 0's,
the report its `/readyz` serves. A forwarder that exits is restarted alone
(`restart_forwarder`, the same command, port and token): the engine ranks keep running.

Before a group is stopped for a scale-down, a rollout or a delete, `drain` runs the
forwarder's preStop hook from the plan (`runtime.forwarder.drain`, the command Kubernetes runs in
the forwarder container), so in-flight requests finish before the engine stops.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_launch.backends.local.files import open_private
from llm_launch.backends.local.processes import START_MARKER, LocalProcess
from llm_launch.domain.groups import GroupCause
from llm_launch.domain.progress import PROGRESS_FILE_ENV, StartupProgress
from llm_launch.engines.common import ENGINE_CONTAINER, FORWARDER_CONTAINER, FORWARDER_TOKEN_ENV
from llm_launch.engines.plan import LaunchPlan

LOCALHOST = "127.0.0.1"
# The drain hook polls until the grace ends; past that plus this margin it is killed.
DRAIN_HOOK_MARGIN_S = 10


@dataclass(frozen=True)
class GroupPorts:
    forwarder: int
    rendezvous: int
    engines: tuple[int, ...]  # one per rank

    @property
    def all(self) -> list[int]:
        return [self.forwarder, self.rendezvous, *self.engines]


def replace_flag(command: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    """Set `flag`'s value in a startup command (before any `--`, where engine args begin)."""
    items = list(command)
    end = items.index("--") if "--" in items else len(items)
    if flag in items[:end]:
        items[items.index(flag) + 1] = value
    else:
        items[end:end] = [flag, value]
    return tuple(items)


def rank_commands(
    plan: LaunchPlan, ports: GroupPorts
) -> list[tuple[str, tuple[str, ...], Mapping[str, str]]]:
    """(name, argv, plan env) of every process of the group, rank 0 first."""
    leader = plan.leader.container(ENGINE_CONTAINER)
    result = [
        ("rank-0", replace_flag(leader.command, "--engine-port", str(ports.engines[0])), leader.env)
    ]
    if plan.worker is not None:
        worker = plan.worker.container(ENGINE_CONTAINER)
        for rank in range(1, plan.nodes):
            argv = replace_flag(worker.command, "--engine-port", str(ports.engines[rank]))
            result.append((f"rank-{rank}", argv, worker.env))
    forwarder = plan.leader.container(FORWARDER_CONTAINER)
    result.append(("forwarder", forwarder.command, forwarder.env))
    return result


def rank_of(process_name: str) -> int:
    """The rank of "rank-N"; the forwarder runs beside rank 0."""
    return int(process_name.split("-")[1]) if process_name.startswith("rank-") else 0


@dataclass
class ProcessGroup:
    """The processes of one group, and what happened to them."""

    endpoint_id: str
    index: int
    generation: int
    ports: GroupPorts
    log_dir: Path
    processes: list[LocalProcess] = field(default_factory=list)  # a dead forwarder removed
    restarts: int = 0  # recreations of the whole group
    consecutive_failures: int = 0
    forwarder_restarts: int = 0
    forwarder_failures: int = 0  # consecutive, like consecutive_failures
    forwarder_next_start_at: float = 0.0  # after the forwarder exited, its backoff ends here
    awaiting_forwarder: bool = False  # restarted, not answering yet: no hang is counted
    last_cause: GroupCause | None = None
    recovered: bool = True  # ready again since `last_cause`: the reason no longer names it
    spawning: str | None = None  # the process being spawned (names a failed spawn)
    ready: bool = False
    ever_ready: bool = False  # since its last start
    last_ready_at: float = 0.0  # when its generation check last passed (monotonic)
    hung_for_s: float | None = None  # set when it failed that check too long: recreate it
    started_at: float = 0.0
    next_start_at: float = 0.0  # after a failure, the backoff ends here
    plan: LaunchPlan | None = None  # what it runs; restarts run the same

    @property
    def forwarder_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ports.forwarder}"

    @property
    def forwarder(self) -> LocalProcess | None:
        return next((p for p in self.processes if p.name == "forwarder"), None)

    def start(self, plan: LaunchPlan, base_env: Mapping[str, str], forwarder_token: str) -> None:
        self.plan = plan
        self.processes = []
        self.ready = False
        self.ever_ready = False  # a recreated group is judged afresh
        self.hung_for_s = None
        self.awaiting_forwarder = False
        self.forwarder_failures = 0
        self.forwarder_next_start_at = 0.0
        self.started_at = time.monotonic()
        self._remove_progress_reports()
        try:
            for name, argv, env in rank_commands(plan, self.ports):
                self.spawning = name
                self.processes.append(
                    self._spawn(name, argv, env, plan.nodes, base_env, forwarder_token)
                )
        except BaseException:
            # A rank that cannot spawn (bad argv or environment, no such program) must not
            # leave the ranks before it running: a group runs whole or not at all.
            self.stop()
            self.processes = []
            raise
        self.spawning = None

    def restart_forwarder(
        self, plan: LaunchPlan, base_env: Mapping[str, str], forwarder_token: str
    ) -> None:
        """Start the forwarder again, alone: the same command, port, token and report."""
        name, argv, env = rank_commands(plan, self.ports)[-1]
        self.processes.append(self._spawn(name, argv, env, plan.nodes, base_env, forwarder_token))
        self.awaiting_forwarder = True

    def _spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], size: int,
        base_env: Mapping[str, str], forwarder_token: str,
    ) -> LocalProcess:  # fmt: skip
        rank = rank_of(name)
        process_env = {**base_env, **env, **self._lws_env(size, rank)}
        process_env.pop(FORWARDER_TOKEN_ENV, None)  # never inherited from the server
        # The forwarder gets rank 0's report: the one it serves in its /readyz body.
        process_env[PROGRESS_FILE_ENV] = str(self.progress_path(rank))
        if name == "forwarder":
            process_env[FORWARDER_TOKEN_ENV] = forwarder_token
        log_path = self.log_dir / f"{name}.log"
        label = str(self.restarts)
        if name == "forwarder" and self.forwarder_restarts:
            label += f" (forwarder restart {self.forwarder_restarts})"
        _mark_start(log_path, label, argv)
        return LocalProcess.spawn(name, argv, process_env, log_path)

    def _lws_env(self, size: int, rank: int) -> dict[str, str]:
        return {
            "LWS_LEADER_ADDRESS": LOCALHOST,
            "LWS_GROUP_SIZE": str(size),
            "LWS_WORKER_INDEX": str(rank),
            "LLM_LAUNCH_WORKER_ADDRESSES": ",".join([LOCALHOST] * (size - 1)),
            "POD_IP": LOCALHOST,
        }

    def progress_path(self, rank: int) -> Path:
        return self.log_dir / f"rank-{rank}.progress.json"

    def progress_reports(self) -> dict[int, StartupProgress]:
        """Each engine rank's latest startup report, by rank (none yet: left out)."""
        reports = {}
        for process in self.processes:
            if process.name.startswith("rank-"):
                try:
                    text = self.progress_path(rank_of(process.name)).read_text()
                except OSError:
                    continue
                report = StartupProgress.from_json(text)
                if report is not None:
                    reports[rank_of(process.name)] = report
        return reports

    def _remove_progress_reports(self) -> None:
        for stale in self.log_dir.glob("rank-*.progress.json") if self.log_dir.is_dir() else []:
            stale.unlink(missing_ok=True)

    def engine_exited(self) -> LocalProcess | None:
        """The first engine rank that exited (it takes the whole group down), or None."""
        return next((p for p in self.processes if p.name != "forwarder" and not p.alive()), None)

    def forwarder_exited(self) -> LocalProcess | None:
        forwarder = self.forwarder
        return forwarder if forwarder is not None and not forwarder.alive() else None

    def drop_forwarder(self, forwarder: LocalProcess) -> None:
        """Take an exited forwarder out (and whatever it left running in its session)."""
        forwarder.stop(grace_s=1.0)
        self.processes.remove(forwarder)

    def drain(self, plan: LaunchPlan, base_env: Mapping[str, str], forwarder_token: str) -> None:
        """Run the forwarder's preStop hook (stop taking requests, wait for those in flight,
        at most the plan's drain grace); its output goes to the forwarder's log."""
        hook = plan.leader.container(FORWARDER_CONTAINER)
        if not hook.pre_stop or not self.processes:
            return
        # Like the forwarder itself, and like a Kubernetes exec hook in its container: the
        # hook alone gets the token, in its environment.
        env = {**base_env, **hook.env, FORWARDER_TOKEN_ENV: forwarder_token}
        with open_private(self.log_dir / "forwarder.log") as log:
            try:
                subprocess.run(
                    list(hook.pre_stop), env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, umask=0o077, check=False,
                    timeout=plan.drain_grace_s + DRAIN_HOOK_MARGIN_S,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                log.write(b"llm-launch: the drain hook outlived the drain grace; stopping\n")

    def stop(self) -> None:
        # Workers first, then the leader and forwarder, like a group being recreated.
        for process in reversed(self.processes):
            process.stop()

    def to_record(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id,
            "index": self.index,
            "generation": self.generation,
            "ports": {
                "forwarder": self.ports.forwarder,
                "rendezvous": self.ports.rendezvous,
                "engines": list(self.ports.engines),
            },
            "log_dir": str(self.log_dir),
            "restarts": self.restarts,
            "forwarder_restarts": self.forwarder_restarts,
            "last_cause": self.last_cause.to_record() if self.last_cause else None,
            "recovered": self.recovered,
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "start_time": p.start_time,
                    "log_path": str(p.log_path),
                }
                for p in self.processes
            ],
        }

    @classmethod
    def adopt(cls, record: Mapping[str, Any]) -> ProcessGroup | None:
        """Rebuild a group from its record if every one of its processes still runs."""
        ports = record["ports"]
        group = cls(
            endpoint_id=record["endpoint_id"],
            index=int(record["index"]),
            generation=int(record["generation"]),
            ports=GroupPorts(ports["forwarder"], ports["rendezvous"], tuple(ports["engines"])),
            log_dir=Path(record["log_dir"]),
            restarts=int(record.get("restarts", 0)),
            forwarder_restarts=int(record.get("forwarder_restarts", 0)),
            last_cause=GroupCause.from_record(record.get("last_cause")),
            recovered=bool(record.get("recovered", True)),
        )
        for entry in record["processes"]:
            process = LocalProcess.adopt(
                entry["name"], int(entry["pid"]), int(entry["start_time"]), Path(entry["log_path"])
            )
            if process is None:
                return None
            group.processes.append(process)
        group.started_at = time.monotonic()
        return group


def stop_recorded_processes(record: Mapping[str, Any]) -> None:
    """Stop whatever still runs of a record that cannot be adopted (never a recycled PID)."""
    for entry in record.get("processes", []):
        process = LocalProcess.adopt(
            entry["name"], int(entry["pid"]), int(entry["start_time"]), Path(entry["log_path"])
        )
        if process is not None:
            process.stop(grace_s=5.0)


def _mark_start(log_path: Path, label: str, argv: Sequence[str]) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open_private(log_path) as log:
        line = f"{START_MARKER}{label} at {stamp} (pid of llm-launch {os.getpid()})\n"
        log.write(line.encode())
