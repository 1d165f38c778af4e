"""What the HTTP side needs to know about the group of ranks: may it generate, and why not.

Implemented by `SingleNode` (here), `simulator.leader.Leader` (rank 0 of a multi-node
group) and the tests' fakes; read by `simulator.engine` before and during every
generation, and by `/get_server_info`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class GroupShape:
    """What every rank of a group must agree on."""

    nnodes: int
    tp_size: int
    pp_size: int


@dataclass(frozen=True)
class RendezvousTiming:
    """How long a group may take to form, and how its ranks watch each other."""

    dist_timeout_s: float  # every rank must have joined by then
    heartbeat_s: float  # how often ranks say they are alive
    rank_timeout_s: float  # silence after which a rank counts as lost


class GroupStatus(Protocol):
    def problem(self) -> str | None:
        """None when the whole group is formed and healthy; else one line saying why not."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready picture of the group, for `/get_server_info`."""
        ...


class SingleNode:
    """`--nnodes 1`: there is nothing to wait for and nothing to lose."""

    def problem(self) -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"nnodes": 1, "state": "formed", "joined_ranks": [0], "problem": None}
