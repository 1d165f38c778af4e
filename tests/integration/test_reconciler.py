"""The reconciler against a real store and an in-memory backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import FieldError, InvalidRequest, UpstreamFailed
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.endpoints import EndpointService
from llm_launch.services.reconciler import Reconciler
from llm_launch.store.repository import EndpointRepository
from llm_launch.store.tables import EndpointRow
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend


async def test_a_pending_endpoint_is_applied_and_its_observation_recorded(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend()
    service = EndpointService(store, load_hardware_catalog(), backend)
    endpoint, _ = await service.create("alice", endpoint_body())
    await Reconciler(store, backend).reconcile_once()
    assert backend.applied == [(endpoint.id, 1)]
    assert backend.live_ids_seen == {endpoint.id}
    stored = await store.get("alice", endpoint.name)
    assert (stored.status, stored.available_workers) == (EndpointStatus.READY, 1)


async def test_an_observation_of_an_older_generation_never_hides_a_newer_update(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend()
    service = EndpointService(store, load_hardware_catalog(), backend)
    endpoint, _ = await service.create("alice", endpoint_body())
    await service.update("alice", endpoint.name, {"min_workers": 2})
    # An observation made for generation 1 arrives after the update.
    written = await store.set_status(endpoint.id, EndpointStatus.READY, "old", generation=1)
    assert not written
    assert (await store.get("alice", endpoint.name)).status is EndpointStatus.UPDATE_PENDING


async def test_a_backend_error_becomes_update_failed_with_its_message(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(fail_apply=UpstreamFailed("kubernetes API unreachable"))
    endpoint, _ = await EndpointService(store, load_hardware_catalog(), backend).create(
        "alice", endpoint_body()
    )
    await Reconciler(store, backend).reconcile_once()
    stored = await store.get("alice", endpoint.name)
    assert stored.status is EndpointStatus.UPDATE_FAILED
    assert stored.status_reason == "kubernetes API unreachable"


async def test_a_delete_interrupted_by_a_crash_is_finished(store: EndpointRepository) -> None:
    backend = FakeBackend()
    endpoint, _ = await EndpointService(store, load_hardware_catalog()).create(
        "alice", endpoint_body()
    )
    await store.mark_deleting(endpoint)
    async with store._sessions.begin() as session:  # the crash happened a while ago
        await session.execute(
            update(EndpointRow).values(last_updated_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    await Reconciler(store, backend).reconcile_once()
    assert backend.torn_down == [endpoint.id]
    assert await store.list_owned("alice", include_deleting=True) == []


async def test_a_spec_the_backend_cannot_run_is_refused_before_it_is_stored(
    store: EndpointRepository,
) -> None:
    backend = FakeBackend(refuse=[FieldError("min_workers", "scale-to-zero unsupported")])
    service = EndpointService(store, load_hardware_catalog(), backend)
    with pytest.raises(InvalidRequest, match="scale-to-zero"):
        await service.create("alice", endpoint_body())
    assert await store.list_owned("alice", include_deleting=True) == []


async def test_a_pass_rereads_a_spec_only_when_its_generation_changed(
    store: EndpointRepository,
) -> None:
    service = EndpointService(store, load_hardware_catalog())
    first, _ = await service.create("alice", endpoint_body())
    second, _ = await service.create("alice", endpoint_body())
    known = {e.id: e for e in await store.list_all()}
    await service.update("alice", first.name, {"min_workers": 2})
    await store.set_status(second.id, EndpointStatus.READY, "ready", generation=1)
    again = {e.id: e for e in await store.list_all(known)}
    assert again[first.id].spec.min_workers == 2  # a new generation: read in full
    assert again[second.id].status is EndpointStatus.READY  # same generation: status refreshed
    assert again[second.id].spec is known[second.id].spec  # and its spec not decoded again
