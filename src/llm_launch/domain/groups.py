"""What happened to a replica group, and what it runs now: causes and per-group detail.

A backend's supervisor (the local controller; on Kubernetes, the pod cache) records why a
group was recreated, or one of its processes restarted, as a `GroupCause`: which process,
its exit code or signal, what the supervisor saw, and when. Status reasons are rendered
from it (`GroupCause.line`), never from a log line: the last lines of the failed
process's log ride along only as `excerpt`, which GET shows in its per-group detail
(`spec.groups`, one `GroupDetail` per group, built by the backend's `group_details`).
Pure data: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class CauseKind(StrEnum):
    EXITED = "exited"  # an engine rank exited: the whole group is recreated
    HUNG = "hung"  # the leader stopped answering the generation check: group recreated
    COULD_NOT_START = "could-not-start"  # a process of the group could not be spawned
    FORWARDER_EXITED = "forwarder-exited"  # the forwarder alone is restarted


@dataclass(frozen=True)
class GroupCause:
    """Why a group (or its forwarder) was last recreated, as the supervisor saw it."""

    kind: CauseKind
    process: str | None  # "rank-0", "rank-1", "forwarder"; None when no one process
    saw: str  # what the supervisor saw: "killed by SIGKILL", "exited with status 3", ...
    at: datetime  # when it saw it (UTC)
    exit_code: int | None = None
    signal: str | None = None  # "SIGKILL", when a signal ended the process
    excerpt: str | None = None  # the last lines of the failed process's log, never a reason

    @property
    def action(self) -> str:
        return (
            "forwarder restarted" if self.kind is CauseKind.FORWARDER_EXITED else "group recreated"
        )

    def summary(self) -> str:
        """Who did what: "worker rank 1 killed by SIGKILL"."""
        if self.kind is CauseKind.HUNG:
            return f"leader {self.saw}"
        if self.kind is CauseKind.COULD_NOT_START:
            who = f"{role(self.process)} " if self.process else ""
            return f"{who}could not start: {self.saw}"
        return f"{role(self.process)} {self.saw}"

    def line(self, restarts: int) -> str:
        """The status line: "worker rank 1 killed by SIGKILL; group recreated at 12:03:05
        UTC (restart 2)" (a forwarder's count is of forwarder restarts)."""
        when = self.at.astimezone(UTC).strftime("%H:%M:%S")
        if self.kind is CauseKind.COULD_NOT_START:  # nothing ran: nothing was recreated
            return f"{self.summary()} (at {when} UTC)"
        which = "forwarder restart" if self.kind is CauseKind.FORWARDER_EXITED else "restart"
        return f"{self.summary()}; {self.action} at {when} UTC ({which} {restarts})"

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "process": self.process,
            "saw": self.saw,
            "at": self.at.isoformat(),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "excerpt": self.excerpt,
        }

    @classmethod
    def from_record(cls, record: Any) -> GroupCause | None:
        """The cause in a record written by `to_record`, or None (absent or not one)."""
        try:
            return cls(
                kind=CauseKind(record["kind"]),
                process=record.get("process"),
                saw=str(record["saw"]),
                at=datetime.fromisoformat(record["at"]),
                exit_code=record.get("exit_code"),
                signal=record.get("signal"),
                excerpt=record.get("excerpt"),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            return None


def role(process: str | None) -> str:
    """How a status names a process: "leader (rank 0)", "worker rank 1", "forwarder"."""
    if process == "rank-0":
        return "leader (rank 0)"
    if process is not None and process.startswith("rank-"):
        return f"worker rank {process.removeprefix('rank-')}"
    return process or "a process"


@dataclass(frozen=True)
class ProcessDetail:
    """One process (locally) or container (on Kubernetes) of a group."""

    name: str  # "rank-0", "rank-1", "forwarder"
    pid: int | None  # None on Kubernetes, or while the process is not running
    alive: bool
    progress: str | None = None  # its startup report's line while the group starts


@dataclass(frozen=True)
class GroupDetail:
    """One group as GET shows it in `spec.groups`."""

    index: int
    generation: int | None  # the endpoint generation it runs (None: not known)
    ready: bool
    phase: str  # one line: "ready", "starting: rank 0 downloading weights 41% ...", ...
    restarts: int  # recreations of the whole group
    forwarder_restarts: int
    last_cause: GroupCause | None
    processes: tuple[ProcessDetail, ...]
