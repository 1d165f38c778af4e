"""DeletesInFlight: which endpoints this server process is deleting right now.

Shared by the delete use case (services/endpoints.py) and the reconciler: whoever claims
an endpoint first tears it down; a second DELETE of the same endpoint is told it is
already being deleted, and the reconciler finishes at once only deletes that nobody in
this process is carrying out (those a crash or a restart interrupted).
"""

from __future__ import annotations


class DeletesInFlight:
    """Endpoint ids being deleted by this process. Used from one event loop only."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def claim(self, endpoint_id: str) -> bool:
        """Take the delete of `endpoint_id`; False if someone here already has it."""
        if endpoint_id in self._ids:
            return False
        self._ids.add(endpoint_id)
        return True

    def release(self, endpoint_id: str) -> None:
        self._ids.discard(endpoint_id)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._ids
