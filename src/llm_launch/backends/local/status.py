"""What a local group is doing, in words: its phase, its status reason, its GET detail.

Callers: `backend.observe_runtime` (the endpoint's status reason) and
`LocalBackend.group_details` (GET's `spec.groups`). Everything here is rendered from the
group's state and its structured `last_cause` (domain/groups.py), never from a log line:
the failed process's last log lines appear only as the cause's excerpt, in the detail. A
cause shows in the reason only until the group is ready again; after that it is history,
which the detail keeps (restarts, last cause, when).
"""

from __future__ import annotations

from llm_launch.backends.local.group import ProcessGroup, rank_of
from llm_launch.domain.groups import CauseKind, GroupDetail, ProcessDetail
from llm_launch.domain.progress import StartupProgress

NO_REPORT = "waiting for the leader's generation check"


def phase(group: ProcessGroup, now: float, reports: dict[int, StartupProgress]) -> str:
    """One line: "ready", "starting: rank 0 downloading weights 41% (...)", ..."""
    if not group.processes:
        wait = group.next_start_at - now
        return f"starting again in {wait:.0f} s" if wait > 0 else "starting"
    if group.ready:
        return "ready"
    if group.forwarder is None:
        wait = max(0.0, group.forwarder_next_start_at - now)
        return f"forwarder starting again in {wait:.0f} s (the engine ranks keep running)"
    if group.awaiting_forwarder:
        return "forwarder restarted, waiting for its generation check"
    if group.ever_ready:
        return f"leader failing the generation check for {now - group.last_ready_at:.0f} s"
    return f"starting: {progress_line(reports)}"


def progress_line(reports: dict[int, StartupProgress]) -> str:
    """ "rank 0 downloading weights 41% (290/700 GB, 1.1 GB/s), rank 1 waiting for the
    leader": each rank's startup report (ranks with none yet are left out)."""
    parts = [f"rank {rank} {report.describe()}" for rank, report in sorted(reports.items())]
    return ", ".join(parts) or NO_REPORT


def reason(group: ProcessGroup, now: float) -> str:
    """The status reason of a group that is not serving: its cause while it lasts, and
    what it does now ("group 0: worker rank 1 killed by SIGKILL; group recreated at
    12:03:05 UTC (restart 1); starting: rank 0 downloading weights 41% (...)")."""
    body = _body(group, now)
    return f"group {group.index}{' ' if body.startswith('starting') else ': '}{body}"


def crash_loop_reason(group: ProcessGroup, now: float) -> str:
    failures = max(group.consecutive_failures, group.forwarder_failures)
    return f"group {group.index} keeps failing ({failures} times in a row): {_body(group, now)}"


def _body(group: ProcessGroup, now: float) -> str:
    text = phase(group, now, group.progress_reports())
    cause = _current_cause_line(group)
    return f"{cause}; {text}" if cause is not None else text


def _current_cause_line(group: ProcessGroup) -> str | None:
    cause = group.last_cause
    if cause is None or group.recovered:
        return None
    forwarder = cause.kind is CauseKind.FORWARDER_EXITED
    return cause.line(group.forwarder_restarts if forwarder else group.restarts)


def detail(group: ProcessGroup, now: float, *, draining: bool = False) -> GroupDetail:
    """The group as GET's `spec.groups` shows it."""
    reports = {} if group.ready else group.progress_reports()
    processes = [
        ProcessDetail(
            name=process.name,
            pid=process.pid,
            alive=process.alive(),
            progress=_progress_of(process.name, reports),
        )
        for process in group.processes
    ]
    if group.processes and group.forwarder is None:
        processes.append(ProcessDetail("forwarder", None, False))
    return GroupDetail(
        index=group.index,
        generation=group.generation,
        ready=group.ready and not draining,
        phase="draining, then stopping" if draining else phase(group, now, reports),
        restarts=group.restarts,
        forwarder_restarts=group.forwarder_restarts,
        last_cause=group.last_cause,
        processes=tuple(processes),
    )


def _progress_of(name: str, reports: dict[int, StartupProgress]) -> str | None:
    if not name.startswith("rank-"):
        return None
    report = reports.get(rank_of(name))
    return report.describe() if report is not None else None
