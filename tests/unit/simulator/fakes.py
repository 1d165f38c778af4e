"""A settable stand-in for the group, for tests of the engine and the HTTP shapes."""

from __future__ import annotations

from typing import Any


class FakeGroup:
    def __init__(self, problem: str | None = None) -> None:
        self.current_problem = problem

    def problem(self) -> str | None:
        return self.current_problem

    def describe(self) -> dict[str, Any]:
        return {"problem": self.current_problem}


class GroupThatBreaks(FakeGroup):
    """Healthy for the first `healthy_checks` calls of `problem()`, then broken for good."""

    def __init__(self, healthy_checks: int, problem: str) -> None:
        super().__init__()
        self._left = healthy_checks
        self._then = problem

    def problem(self) -> str | None:
        if self._left > 0:
            self._left -= 1
            return None
        return self._then
