"""A group's cause reads as one status line, and survives its record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm_launch.domain.groups import CauseKind, GroupCause

AT = datetime(2026, 1, 2, 12, 3, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cause", "count", "line"),
    [
        (
            GroupCause(CauseKind.EXITED, "rank-1", "killed by SIGKILL", AT, signal="SIGKILL"),
            2,
            "worker rank 1 killed by SIGKILL; group recreated at 12:03:05 UTC (restart 2)",
        ),
        (
            GroupCause(CauseKind.EXITED, "rank-0", "exited with status 3", AT, exit_code=3),
            1,
            "leader (rank 0) exited with status 3; group recreated at 12:03:05 UTC (restart 1)",
        ),
        (
            GroupCause(
                CauseKind.HUNG, "rank-0", "stopped answering the generation check for 31 s", AT
            ),
            1,
            "leader stopped answering the generation check for 31 s; group recreated at "
            "12:03:05 UTC (restart 1)",
        ),
        (
            GroupCause(CauseKind.FORWARDER_EXITED, "forwarder", "killed by SIGTERM", AT),
            3,
            "forwarder killed by SIGTERM; forwarder restarted at 12:03:05 UTC "
            "(forwarder restart 3)",
        ),
        (
            GroupCause(CauseKind.COULD_NOT_START, "rank-0", "OSError: no such program", AT),
            0,
            "leader (rank 0) could not start: OSError: no such program (at 12:03:05 UTC)",
        ),
    ],
)
def test_each_kind_of_cause_reads_as_who_what_and_when(
    cause: GroupCause, count: int, line: str
) -> None:
    assert cause.line(count) == line


def test_a_cause_survives_its_record_and_a_foreign_record_is_none() -> None:
    cause = GroupCause(
        CauseKind.EXITED, "rank-1", "exited with status 1", AT, exit_code=1, excerpt="boom"
    )
    assert GroupCause.from_record(cause.to_record()) == cause
    assert GroupCause.from_record(None) is None
    assert GroupCause.from_record({"kind": "melted", "saw": "x", "at": AT.isoformat()}) is None
