"""The reconciler stores each endpoint's ready targets for `llm-launch gateway` processes:
written when they change, cleared when none is ready, and handed out by a routing table
that reads them (`RoutingTable(stored_targets=True)`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.services.endpoints import EndpointService
from llm_launch.services.reconciler import Reconciler
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.observations import Observed, Recorded
from llm_launch.store.repository import EndpointRepository
from tests.builders import endpoint_body
from tests.fakes.backend import FakeBackend


@dataclass
class ReadyGroups(FakeBackend):
    """A backend whose ready targets a test sets."""

    ready: list[str] = field(default_factory=list)

    def targets(self, endpoint: Endpoint) -> list[str]:
        return list(self.ready)


async def _created(store: EndpointRepository, backend: FakeBackend) -> Endpoint:
    service = EndpointService(store, load_hardware_catalog(), backend)
    endpoint, _ = await service.create("alice", endpoint_body())
    return endpoint


async def _gateway_targets(store: EndpointRepository, endpoint: Endpoint) -> list[str]:
    table = RoutingTable(store, stored_targets=True)
    await table.refresh()
    return table.targets(table.lookup("alice", endpoint.name))


async def test_a_gateway_table_hands_out_the_targets_the_reconciler_stored(
    store: EndpointRepository,
) -> None:
    backend = ReadyGroups(ready=["http://127.0.0.1:20002", "http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)

    await Reconciler(store, backend).reconcile_once()

    targets = await _gateway_targets(store, endpoint)
    assert sorted(targets) == ["http://127.0.0.1:20001", "http://127.0.0.1:20002"]


async def test_targets_are_cleared_when_no_group_is_ready_any_more(
    store: EndpointRepository,
) -> None:
    backend = ReadyGroups(ready=["http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)
    reconciler = Reconciler(store, backend)
    await reconciler.reconcile_once()

    backend.ready = []
    await reconciler.reconcile_once()

    assert await _gateway_targets(store, endpoint) == []


async def test_a_new_reconciler_whose_backend_has_not_looked_yet_keeps_the_stored_targets(
    store: EndpointRepository,
) -> None:
    """A new leader's first pass, before its watches listed: the groups still serve, so the
    gateways' targets stay; once the backend has looked, its view is stored again."""
    backend = ReadyGroups(ready=["http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)
    await Reconciler(store, backend).reconcile_once()

    newcomer = ReadyGroups(ready=[], targets_known=False)
    await Reconciler(store, newcomer).reconcile_once()
    kept = await _gateway_targets(store, endpoint)
    newcomer.targets_known = True
    await Reconciler(store, newcomer).reconcile_once()

    assert kept == ["http://127.0.0.1:20001"]
    assert await _gateway_targets(store, endpoint) == []


def _target_writes(store: EndpointRepository, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The targets the store is asked to write from now on, in order."""
    writes: list[str | None] = []
    record = store.record

    async def counted(batch: Sequence[Observed]) -> list[Recorded]:
        writes.extend(observed.targets for observed in batch if observed.write_targets)
        return await record(batch)

    monkeypatch.setattr(store, "record", counted)
    return writes


async def test_unchanged_targets_are_not_written_again(
    store: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ReadyGroups(ready=["http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)
    writes = _target_writes(store, monkeypatch)
    reconciler = Reconciler(store, backend)
    await reconciler.reconcile_once()
    await reconciler.reconcile_once()
    backend.ready = ["http://127.0.0.1:20001", "http://127.0.0.1:20003"]
    await reconciler.reconcile_once()

    assert writes == [
        '["http://127.0.0.1:20001"]',
        '["http://127.0.0.1:20001", "http://127.0.0.1:20003"]',
    ]
    assert sorted(await _gateway_targets(store, endpoint)) == [
        "http://127.0.0.1:20001",
        "http://127.0.0.1:20003",
    ]


async def test_a_new_reconciler_rewrites_only_the_targets_that_differ_from_the_stored_ones(
    store: EndpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new leader (a fresh Reconciler) starts from what the last one stored: with 10,000
    endpoints, rewriting every one's targets made every gateway read them all again."""
    backend = ReadyGroups(ready=["http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)
    await Reconciler(store, backend).reconcile_once()  # the leader before
    writes = _target_writes(store, monkeypatch)
    await Reconciler(store, backend).reconcile_once()  # a new leader, same groups
    assert writes == []
    backend.ready = ["http://127.0.0.1:20003"]  # the groups moved while nobody led
    await Reconciler(store, backend).reconcile_once()

    assert writes == ['["http://127.0.0.1:20003"]']
    assert await _gateway_targets(store, endpoint) == ["http://127.0.0.1:20003"]


async def test_a_table_without_stored_targets_hands_out_none(store: EndpointRepository) -> None:
    backend = ReadyGroups(ready=["http://127.0.0.1:20001"])
    endpoint = await _created(store, backend)
    await Reconciler(store, backend).reconcile_once()

    table = RoutingTable(store)  # `serve`'s: its backend knows the targets
    await table.refresh()

    assert table.targets(table.lookup("alice", endpoint.name)) == []
