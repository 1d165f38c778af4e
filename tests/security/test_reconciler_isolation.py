"""Issue 8, reconciler: one endpoint that breaks or hangs its backend never holds back the
other owners' endpoints, and an interrupted delete is finished at once after a restart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from llm_launch.backends.base import Observation
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.endpoints import EndpointService
from llm_launch.services.reconciler import CONCURRENCY, Reconciler
from llm_launch.store.repository import EndpointRepository
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend

COUNT = 600  # endpoints in the pass below: more than the workers handle between yields


@dataclass
class TroubledBackend(FakeBackend):
    """Raises, or never answers, for the endpoints named; serves the others."""

    raise_for: dict[str, Exception] = field(default_factory=dict)
    hang_for: set[str] = field(default_factory=set)

    async def apply(self, endpoint: Endpoint) -> None:
        if endpoint.name in self.raise_for:
            raise self.raise_for[endpoint.name]
        if endpoint.name in self.hang_for:
            await asyncio.Event().wait()
        await super().apply(endpoint)


async def create(store: EndpointRepository, owner: str) -> Endpoint:
    endpoint, _ = await EndpointService(store, load_hardware_catalog()).create(
        owner, endpoint_body()
    )
    return endpoint


async def test_an_unexpected_error_for_one_endpoint_fails_only_that_one(
    store: EndpointRepository,
) -> None:
    broken = await create(store, "mallory")
    healthy = await create(store, "alice")
    error = OverflowError("cannot fit 'int' into an index-sized integer")
    backend = TroubledBackend(raise_for={broken.name: error})
    await Reconciler(store, backend).reconcile_once()
    assert (await store.get("alice", healthy.name)).status is EndpointStatus.READY
    failed = await store.get("mallory", broken.name)
    assert failed.status is EndpointStatus.UPDATE_FAILED
    reason = failed.status_reason or ""
    assert "OverflowError: cannot fit 'int' into an index-sized integer" in reason
    assert "Traceback" not in reason and "\n" not in reason


async def test_a_backend_that_never_answers_for_one_endpoint_does_not_stall_the_others(
    store: EndpointRepository,
) -> None:
    stuck = await create(store, "mallory")
    healthy = await create(store, "alice")
    backend = TroubledBackend(hang_for={stuck.name})
    reconciler = Reconciler(store, backend, endpoint_timeout_s=0.2)
    await asyncio.wait_for(reconciler.reconcile_once(), timeout=60)  # a hang guard only
    assert (await store.get("alice", healthy.name)).status is EndpointStatus.READY
    slow = await store.get("mallory", stuck.name)
    assert slow.status is EndpointStatus.UPDATE_FAILED
    assert "did not answer within 0.2s" in (slow.status_reason or "")


async def test_a_failing_garbage_collection_does_not_stop_the_pass(
    store: EndpointRepository,
) -> None:
    healthy = await create(store, "alice")

    class GarbageFails(FakeBackend):
        async def collect_garbage(self, live_endpoint_ids: set[str]) -> None:
            raise RuntimeError("state directory unreadable")

    await Reconciler(store, GarbageFails()).reconcile_once()
    assert (await store.get("alice", healthy.name)).status is EndpointStatus.READY


async def test_an_interrupted_delete_is_finished_on_the_first_pass_after_a_restart(
    store: EndpointRepository,
) -> None:
    endpoint = await create(store, "alice")
    await store.mark_deleting(endpoint)  # then the server died, a moment ago
    backend = FakeBackend()
    await Reconciler(store, backend).reconcile_once()  # the next server's first pass
    assert backend.torn_down == [endpoint.id]
    assert await store.list_owned("alice", include_deleting=True) == []


@dataclass
class Journal(FakeBackend):
    """Notes each observe in a journal that a ticking task also writes to."""

    journal: list[str] = field(default_factory=list)

    async def observe(self, endpoint: Endpoint) -> Observation:
        self.journal.append("endpoint")
        return await super().observe(endpoint)


async def test_a_pass_over_endpoints_that_need_nothing_lets_the_event_loop_serve_others(
    store: EndpointRepository,
) -> None:
    """Inference requests share serve's event loop with the reconciler: a pass that never
    suspends (nothing to write for any endpoint) must still let them in once its slice of
    the loop is spent (here none: every endpoint), not only once the whole pass is done."""
    for i in range(COUNT):
        await store.create(f"owner{i % 10}", build_spec(endpoint_body(), load_hardware_catalog()))
    backend = Journal()
    reconciler = Reconciler(store, backend, loop_slice_s=0)
    await reconciler.reconcile_once()  # the first pass writes every status
    backend.journal.clear()

    async def tick() -> None:
        while True:
            backend.journal.append("tick")
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    await reconciler.reconcile_once()  # nothing changed: no endpoint writes anything
    ticker.cancel()

    longest = max(
        len(run)
        for run in "".join("e" if entry == "endpoint" else "|" for entry in backend.journal).split(
            "|"
        )
    )
    assert backend.journal.count("endpoint") == COUNT
    assert longest <= CONCURRENCY < COUNT  # at most one endpoint per worker between turns
