"""Helpers shared by the weights tests: a log that keeps its lines, and a tree's content."""

from __future__ import annotations

from pathlib import Path

from llm_launch.runtime.startup.weights import MARKER_NAME


class Lines:
    """A log function that keeps what it was given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (but our completion marker), by relative path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and path.name != MARKER_NAME
    }
