"""Conversions between endpoint rows and the domain's `Endpoint`, for `store/repository.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus
from llm_launch.store.tables import EndpointRow

__all__ = ["same_state", "to_endpoint", "utc"]


def utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_endpoint(row: EndpointRow) -> Endpoint:
    """The domain endpoint a row stores (its spec decoded: the costly part)."""
    return Endpoint(
        id=row.id,
        owner=row.owner,
        spec=EndpointSpec.from_dict(row.spec),
        status=EndpointStatus(row.status),
        status_reason=row.status_reason,
        generation=row.generation,
        created_at=utc(row.created_at),
        last_updated_at=utc(row.last_updated_at),
        available_workers=row.available_workers,
        unavailable_workers=row.unavailable_workers,
        forwarder_token=row.forwarder_token,
    )


def same_state(endpoint: Endpoint, state: Any) -> bool:
    """Whether `endpoint` already has the status columns `state` (a narrow row) holds."""
    return bool(
        endpoint.generation == state.generation
        and endpoint.status.value == state.status
        and endpoint.status_reason == state.status_reason
        and endpoint.available_workers == state.available_workers
        and endpoint.unavailable_workers == state.unavailable_workers
        # A teardown's heartbeat changes only this; the reconciler judges staleness by it.
        and endpoint.last_updated_at == utc(state.last_updated_at)
    )
