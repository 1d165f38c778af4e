"""`--wait`'s decisions on a scripted sequence of GET answers (no server, no sleeping)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from llm_launch.cli import waiting
from llm_launch.cli.waiting import EXIT_FAILED, EXIT_READY, wait_for_rollout
from llm_launch.client import ApiError

BEFORE = "2026-01-02T03:04:05.000001Z"
AFTER = "2026-01-02T03:04:06.5Z"


def answer(status: str, updated: str, reason: str = "", **spec: Any) -> dict[str, Any]:
    return {"name": "ep", "status": status,
            "spec": {"status_reason": reason, "last_updated_at": updated, **spec}}  # fmt: skip


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "POLL_S", 0.0)


def scripted(
    *answers: dict[str, Any] | ApiError,
) -> tuple[Callable[[], dict[str, Any]], list[int]]:
    calls: list[int] = []
    sequence = iter(answers)

    def fetch() -> dict[str, Any]:
        calls.append(1)
        item = next(sequence)
        if isinstance(item, ApiError):
            raise item
        return item

    return fetch, calls


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_a_ready_from_before_the_update_does_not_end_the_wait() -> None:
    fetch, calls = scripted(
        answer("READY", BEFORE, "ready"),  # a stale read: the endpoint as it was
        answer("UPDATE_PENDING", AFTER, "update waiting for a backend to roll it out"),
        answer("READY", AFTER, "ready"),
    )
    console, _ = plain_console()
    outcome = wait_for_rollout(fetch, "ep", 60, console, updated_after=BEFORE)
    assert outcome.code == EXIT_READY
    assert len(calls) == 3


def test_a_failure_ends_the_wait_with_its_reason_and_passing_errors_are_waited_through() -> None:
    fetch, calls = scripted(
        ApiError(0, "cannot reach the server"),
        ApiError(503, "restarting"),
        answer("UPDATE_IN_PROGRESS", AFTER, "group 0: starting"),
        answer("UPDATE_FAILED", AFTER, "group 0 keeps failing"),
    )
    console, out = plain_console()
    outcome = wait_for_rollout(fetch, "ep", 60, console)
    assert (outcome.code, len(calls)) == (EXIT_FAILED, 4)
    assert "group 0 keeps failing" in outcome.message
    assert "UPDATE_IN_PROGRESS" in out.getvalue()


def test_the_view_prints_each_group_line_once_while_it_does_not_change() -> None:
    starting = [{"index": 0, "phase": "starting: rank 0 downloading weights 41%", "restarts": 1},
                {"index": 1, "phase": "ready", "restarts": 0}]  # fmt: skip
    fetch, _ = scripted(
        answer("UPDATE_IN_PROGRESS", AFTER, "starting", groups=starting),
        answer("UPDATE_IN_PROGRESS", AFTER, "starting", groups=starting),
        answer("READY", AFTER, "ready", groups=[{**starting[1]}, {**starting[1], "index": 0}]),
    )
    console, out = plain_console()
    assert wait_for_rollout(fetch, "ep", 60, console).code == EXIT_READY
    printed = out.getvalue().splitlines()
    assert printed.count("  group 0: starting: rank 0 downloading weights 41% (recreated 1x)") == 1
    assert printed.count("  group 1: ready") == 1
    assert "  group 0: ready" in printed


def test_an_endpoint_that_is_gone_ends_the_wait_as_a_failure() -> None:
    fetch, _ = scripted(ApiError(404, "no endpoint named 'ep'"))
    console, _ = plain_console()
    outcome = wait_for_rollout(fetch, "ep", 60, console)
    assert outcome.code == EXIT_FAILED and "no endpoint named" in outcome.message
