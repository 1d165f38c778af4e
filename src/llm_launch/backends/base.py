"""The backend contract: apply a spec, observe what runs, tear it down.

The reconciler (`services/`) is the only caller. A backend never writes to the
store; it reports an Observation and the reconciler records it, so status logic
lives in one place whatever the backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError
from llm_launch.domain.groups import GroupDetail
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.status import EndpointStatus


@dataclass(frozen=True)
class Observation:
    """What a backend saw of one endpoint's groups."""

    status: EndpointStatus  # UPDATE_IN_PROGRESS, READY or UPDATE_FAILED
    reason: str | None
    available_workers: int
    unavailable_workers: int


@dataclass(frozen=True)
class ServingPoint:
    """Where an endpoint's traffic goes as its backend runs it: what GET and list show as
    Launch's `destination`, `deployment_name` and `concurrent_requests_per_worker`."""

    destination: str  # base URL(s) of what takes the endpoint's traffic; "" while none runs
    deployment_name: str | None  # the workload's name, where the backend runs one
    concurrent_requests_per_worker: int  # the limit of each group's forwarder


class Backend(Protocol):
    """Runs endpoints. Every method is idempotent and safe to retry."""

    name: str

    def check(self, spec: EndpointSpec) -> list[FieldError]:
        """What this backend cannot run of a valid spec (checked before anything is stored)."""
        ...

    async def apply(self, endpoint: Endpoint) -> None:
        """Create or roll what runs `endpoint` so that it matches `endpoint.spec`."""
        ...

    async def observe(self, endpoint: Endpoint) -> Observation:
        """Report the endpoint's true state (READY only after a real generation check)."""
        ...

    async def teardown(self, endpoint: Endpoint) -> None:
        """Stop and remove everything of `endpoint`; return once it is gone."""
        ...

    async def collect_garbage(self, live_endpoint_ids: set[str]) -> None:
        """Remove what this backend runs for endpoints that no longer exist."""
        ...

    def targets(self, endpoint: Endpoint) -> list[str]:
        """Base URLs of the forwarders of the endpoint's ready groups (for routing)."""
        ...

    def knows_targets(self, endpoint: Endpoint) -> bool:
        """Whether `targets` is this backend's settled view of the endpoint; False while it
        has not looked yet (its first list of objects still coming after a start). The
        reconciler then leaves the targets stored for gateways as they were, rather than
        clear them while the groups keep serving."""
        ...

    def serving_point(self, endpoint: Endpoint) -> ServingPoint:
        """Where the endpoint's traffic goes and how many requests each group's forwarder
        takes at once (its --max-concurrency), as this backend runs it."""
        ...

    def group_details(self, endpoint: Endpoint) -> list[GroupDetail]:
        """Each running group of the endpoint (GET's `spec.groups`): its processes or pods,
        phase, restarts and last cause, by group index."""
        ...

    async def logs(self, endpoint: Endpoint, group: int, process: str, tail: int) -> str:
        """The last `tail` lines of one process's log (`process`: "rank-N" or "forwarder")."""
        ...

    async def follow_logs(
        self, endpoint: Endpoint, group: int, process: str, tail: int
    ) -> AsyncIterator[bytes]:
        """The last `tail` lines of one process's log, then what it writes after, until the
        log ends or the caller stops iterating. NotFound (no such log) and InvalidRequest
        (this backend cannot follow) are raised here, before anything is streamed."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks (not the endpoints' workloads)."""
        ...
