"""Endpoint lifecycle states, with the Launch names clients already know."""

from __future__ import annotations

from enum import StrEnum


class EndpointStatus(StrEnum):
    """Where an endpoint stands. Set by the API on writes and by a backend on observation."""

    UPDATE_PENDING = "UPDATE_PENDING"  # work recorded, no backend has picked it up yet
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"  # a backend is deploying it
    READY = "READY"  # every wanted group answered a real generation check
    UPDATE_FAILED = "UPDATE_FAILED"  # deployment failed; status_reason says why
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"  # teardown requested; the record goes when done
