"""Startup progress of one rank: what its startup program is doing, and how far it got.

Startup on real hardware takes minutes to an hour (resolving the leader, waiting for the
workers, fetching hundreds of GB of weights, loading, the rendezvous), so each rank's
startup program reports its phase here, and while it fetches weights the bytes done, the
total and the rate. The report is a small JSON document in a file
(`LLM_LAUNCH_PROGRESS_FILE`), replaced atomically at each change: the local backend reads
every rank's file, and on Kubernetes the leader's forwarder serves its rank's report in its
`/readyz` body. `describe` gives the one line a status shows
("downloading weights 41% (290/700 GB, 1.1 GB/s)").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

PROGRESS_FILE_ENV = "LLM_LAUNCH_PROGRESS_FILE"


class Phase(StrEnum):
    RESOLVING_LEADER = "resolving-leader"  # finding the leader's address
    WAITING_FOR_LEADER = "waiting-for-leader"  # a worker, until the leader answers
    DOWNLOADING_WEIGHTS = "downloading-weights"
    WAITING_FOR_WORKERS = "waiting-for-workers"  # the leader, until every worker is there
    STARTING_ENGINE = "starting-engine"  # the engine runs: loading, rendezvous, warm-up
    FAILED = "failed"  # the startup program stopped with an error (`detail` says which)


_WORDS = {
    Phase.RESOLVING_LEADER: "resolving the leader",
    Phase.WAITING_FOR_LEADER: "waiting for the leader",
    Phase.DOWNLOADING_WEIGHTS: "downloading weights",
    Phase.WAITING_FOR_WORKERS: "waiting for the workers",
    Phase.STARTING_ENGINE: "engine starting (loading, rendezvous)",
    Phase.FAILED: "startup failed",
}


@dataclass(frozen=True)
class WeightsProgress:
    done_bytes: int
    total_bytes: int | None  # None until the listing of the checkpoint is known
    rate_bytes_per_s: float


@dataclass(frozen=True)
class StartupProgress:
    rank: int
    phase: Phase
    updated_at: float  # unix seconds
    detail: str | None = None  # e.g. which workers are awaited, or the error
    weights: WeightsProgress | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StartupProgress | None:
        """The report in `text`, or None when it is not one (a torn or foreign file)."""
        try:
            data: Any = json.loads(text)
            weights = data.get("weights")
            return cls(
                rank=int(data["rank"]),
                phase=Phase(data["phase"]),
                updated_at=float(data["updated_at"]),
                detail=data.get("detail"),
                weights=WeightsProgress(
                    done_bytes=int(weights["done_bytes"]),
                    total_bytes=(
                        None if weights["total_bytes"] is None else int(weights["total_bytes"])
                    ),
                    rate_bytes_per_s=float(weights["rate_bytes_per_s"]),
                )
                if weights
                else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        """One line for a status: the phase, with the fetch's numbers while it fetches."""
        text = _WORDS[self.phase]
        if self.phase is Phase.DOWNLOADING_WEIGHTS and self.weights is not None:
            text += f" {_fetch_numbers(self.weights)}"
        elif self.detail:
            text += f": {self.detail}"
        return text


def _fetch_numbers(weights: WeightsProgress) -> str:
    rate = f"{_gb(weights.rate_bytes_per_s)} GB/s"
    if not weights.total_bytes:
        return f"({_gb(weights.done_bytes)} GB, {rate})"
    percent = int(100 * weights.done_bytes / weights.total_bytes)
    return f"{percent}% ({_gb(weights.done_bytes)}/{_gb(weights.total_bytes)} GB, {rate})"


def _gb(amount: float) -> str:
    value = amount / 1e9
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
