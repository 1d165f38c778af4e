"""Endpoint: a stored spec with its owner, lifecycle status and observed worker counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus


@dataclass(frozen=True)
class Endpoint:
    """One endpoint as the store knows it. `generation` counts accepted spec changes."""

    id: str
    owner: str
    spec: EndpointSpec
    status: EndpointStatus
    status_reason: str | None
    generation: int
    created_at: datetime
    last_updated_at: datetime
    available_workers: int = 0
    unavailable_workers: int = 0

    @property
    def name(self) -> str:
        return self.spec.name
