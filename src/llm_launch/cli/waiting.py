"""`--wait` of `endpoints create` and `endpoints update`: watch the endpoint until its
rollout ends, showing its status, reason and each group's progress as they change.

On a terminal the view is redrawn in place (rich's Live); elsewhere (a pipe, a CI log)
each line that changed is printed once. The wait ends READY (exit 0), UPDATE_FAILED
(exit 1, with the reason) or at the timeout (exit 2). The server answers an update at
once with UPDATE_PENDING, but a client must not take a READY of the endpoint as it was
before the update for the update's: only answers whose `last_updated_at` is later than
the one read before the update count. Errors a retry may mend (the server restarting, a
5xx) are shown and waited through; a 4xx (the endpoint deleted) ends the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from llm_launch.cli.views import progress_lines
from llm_launch.client import ApiError

EXIT_READY = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
POLL_S = 1.0
WAIT_HELP = (
    "watch the endpoint until it is READY (exit 0), UPDATE_FAILED (exit 1, with the reason) "
    "or --timeout passes (exit 2), showing its status and each group's progress"
)
TIMEOUT_HELP = "seconds --wait waits at most"


@dataclass(frozen=True)
class Outcome:
    code: int  # EXIT_READY, EXIT_FAILED or EXIT_TIMEOUT
    message: str


def wait_for_rollout(
    fetch: Callable[[], Mapping[str, Any]],
    name: str,
    timeout: float,
    console: Console,
    *,
    updated_after: str | None = None,
) -> Outcome:
    """Poll `fetch` (GET of endpoint `name`) until its rollout ends or `timeout` seconds
    pass. `updated_after`: the endpoint's `last_updated_at` before the update; answers
    not later than it are from before the update and never end the wait."""
    deadline = time.monotonic() + timeout
    last: Mapping[str, Any] | None = None
    with _view(console, timeout) as show:
        while True:
            try:
                endpoint = fetch()
            except ApiError as exc:
                if 400 <= exc.status_code < 500:
                    return Outcome(EXIT_FAILED, f"{name}: {exc}")
                show({"error": f"cannot read {name} ({exc}); trying again"})
            else:
                if _after(endpoint, updated_after):
                    last = endpoint
                    show(progress_lines(endpoint))
                    if (outcome := _ended(name, endpoint)) is not None:
                        return outcome
            if time.monotonic() >= deadline:
                return _timed_out(name, last, timeout)
            time.sleep(POLL_S)


def _ended(name: str, endpoint: Mapping[str, Any]) -> Outcome | None:
    status = endpoint.get("status")
    reason = (endpoint.get("spec") or {}).get("status_reason") or "no reason given"
    if status == "READY":
        return Outcome(EXIT_READY, f"{name} is READY")
    if status == "UPDATE_FAILED":
        return Outcome(EXIT_FAILED, f"{name} failed (UPDATE_FAILED): {reason}")
    return None


def _timed_out(name: str, last: Mapping[str, Any] | None, timeout: float) -> Outcome:
    if last is None:
        return Outcome(EXIT_TIMEOUT, f"{name}: no answer about this rollout within {timeout:g}s")
    reason = (last.get("spec") or {}).get("status_reason") or "no reason given"
    return Outcome(
        EXIT_TIMEOUT, f"{name} is not READY after {timeout:g}s: {last.get('status')}: {reason}"
    )


def _after(endpoint: Mapping[str, Any], updated_after: str | None) -> bool:
    if updated_after is None:
        return True
    seen = (endpoint.get("spec") or {}).get("last_updated_at")
    try:
        return _instant(str(seen)) > _instant(updated_after)
    except ValueError:  # a server that does not say: it cannot be told apart, so it counts
        return True


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@contextmanager
def _view(console: Console, timeout: float) -> Iterator[Callable[[dict[str, str]], None]]:
    """A function to show the current lines: redrawn in place on a terminal, else each
    changed line printed once."""
    if not console.is_terminal:
        printed: dict[str, str] = {}

        def print_changes(lines: dict[str, str]) -> None:
            for key, line in lines.items():
                if printed.get(key) != line:
                    console.print(line, highlight=False, markup=False, soft_wrap=True)
                    printed[key] = line

        yield print_changes
        return
    started = time.monotonic()
    with Live(Text(""), console=console, auto_refresh=False, transient=False) as live:

        def redraw(lines: dict[str, str]) -> None:
            waited = f"(waiting {time.monotonic() - started:.0f}s of at most {timeout:g}s)"
            live.update(Text("\n".join([*lines.values(), waited])), refresh=True)

        yield redraw
