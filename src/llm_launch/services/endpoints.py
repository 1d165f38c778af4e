"""Endpoint use cases, called by the API routers: validate, persist, hand work to a backend.

Create and update only record the new spec (status UPDATE_PENDING); the reconciler
makes a backend carry it out. Both refuse a local checkpoint outside the configured
checkpoint roots (`domain/checkpoints.py`), and a spec that takes its owner past a quota
(`domain/quotas.py`, checked by the store atomically with the write).

Delete answers at once: it marks the endpoint DELETE_IN_PROGRESS (from then on it is gone
from its owner's GET, list and inference routes) and hands the backend's teardown to
`services/deletes.py`, which retries it until everything is gone and only then removes the
row. Until then the row keeps the name (a create with it is a 409 saying so) and the
quota, so a failed teardown never leaves processes or objects without a row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from llm_launch.backends.base import Backend, ServingPoint
from llm_launch.config.quotas import QuotaBook
from llm_launch.domain.checkpoints import checkpoint_root_problem
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, InvalidRequest, NotFound
from llm_launch.domain.groups import GroupDetail
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.spec_builder import apply_update, build_spec
from llm_launch.engines.options import PlanOptions
from llm_launch.services.deletes import Teardowns
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.repository import EndpointOrder, EndpointRepository


class EndpointService:
    def __init__(
        self,
        repository: EndpointRepository,
        catalog: HardwareCatalog,
        backend: Backend | None = None,
        teardowns: Teardowns | None = None,
        *,
        quotas: QuotaBook | None = None,
        checkpoint_roots: Sequence[PurePosixPath] = (),
        routing_table: RoutingTable | None = None,
    ) -> None:
        self.repository = repository
        self.catalog = catalog
        self.backend = backend
        self.quotas = quotas or QuotaBook()  # the server-wide defaults
        self.checkpoint_roots = tuple(checkpoint_roots)
        # The inference routes' table: this process's writes reach it at once.
        self.routing_table = routing_table
        # Shared with the reconciler, which finishes only deletes nobody here carries out.
        self.teardowns = teardowns or Teardowns(repository, backend)

    async def create(self, owner: str, fields: Mapping[str, Any]) -> tuple[Endpoint, str]:
        """Validate and store a new endpoint; returns it and its creation task id."""
        spec = build_spec(fields, self.catalog)
        self._check_runnable(spec)
        created = await self.repository.create(owner, spec, self.quotas.for_owner(owner))
        self._routed(created[0])
        return created

    async def get(self, owner: str, name: str) -> Endpoint:
        return await self.repository.get(owner, name)

    async def list(
        self,
        owner: str,
        name: str | None = None,
        *,
        include_deleting: bool = False,
        order: EndpointOrder = EndpointOrder.OLDEST,
    ) -> list[Endpoint]:
        return await self.repository.list_owned(
            owner, name, include_deleting=include_deleting, order=order
        )

    def serving_point(self, endpoint: Endpoint) -> ServingPoint:
        """Where the endpoint's traffic goes, for GET and list. Without a backend nothing
        runs anywhere: no destination, and the forwarder limit every backend starts from."""
        if self.backend is None:
            return ServingPoint("", None, PlanOptions().forwarder_max_concurrency)
        return self.backend.serving_point(endpoint)

    def group_details(self, endpoint: Endpoint) -> Sequence[GroupDetail]:
        """Each running group of the endpoint, for GET and list (none without a backend)."""
        return self.backend.group_details(endpoint) if self.backend is not None else []

    async def update(
        self, owner: str, name: str, changes: Mapping[str, Any]
    ) -> tuple[Endpoint, str]:
        current = await self.repository.get(owner, name)  # NotFound once being deleted
        spec = apply_update(current.spec, changes, self.catalog)
        self._check_runnable(spec)
        updated = await self.repository.update_spec(current, spec, self.quotas.for_owner(owner))
        self._routed(updated[0])
        return updated

    async def rule_errors(
        self, owner: str, name: str | None, fields: Mapping[str, Any]
    ) -> Sequence[FieldError]:
        """What a create (`name` None) or an update of `name` with `fields` would be refused
        for; nothing is stored. The API names these next to a body's type errors."""
        try:
            if name is None:
                spec = build_spec(fields, self.catalog)
            else:
                current = await self.repository.get(owner, name)
                spec = apply_update(current.spec, fields, self.catalog)
            self._check_runnable(spec)
        except InvalidRequest as exc:
            return exc.errors
        except NotFound:  # an update of nothing: its type errors are the answer
            return []
        return []

    def _routed(self, endpoint: Endpoint) -> None:
        if self.routing_table is not None:
            self.routing_table.put(endpoint)

    def _check_runnable(self, spec: EndpointSpec) -> None:
        """The rules of this server rather than of the spec: checkpoint roots, the backend."""
        errors = []
        if problem := checkpoint_root_problem(spec.checkpoint_path, self.checkpoint_roots):
            errors.append(problem)
        if self.backend is not None:
            errors += self.backend.check(spec)
        if errors:
            raise InvalidRequest(errors)

    async def logs(self, owner: str, name: str, group: int, process: str, tail: int) -> str:
        endpoint = await self.repository.get(owner, name)
        if self.backend is None:
            raise NotFound(f"endpoint {name!r} runs nowhere yet, so it has no logs")
        return await self.backend.logs(endpoint, group, process, tail)

    async def follow_logs(
        self, owner: str, name: str, group: int, process: str, tail: int
    ) -> AsyncIterator[bytes]:
        """The log's last lines, then what the process writes after (`logs?follow=true`)."""
        endpoint = await self.repository.get(owner, name)
        if self.backend is None:
            raise NotFound(f"endpoint {name!r} runs nowhere yet, so it has no logs")
        return await self.backend.follow_logs(endpoint, group, process, tail)

    async def delete(self, owner: str, name: str) -> None:
        """Begin the delete and return: the teardown goes on in the background.

        Of concurrent deletes exactly one begins it; the others, like any delete after it,
        are a 404 (the endpoint has left its owner's view). Without a backend nothing runs
        anywhere, so the record goes at once.
        """
        endpoint = await self.repository.get(owner, name)
        operation_id = await self.repository.mark_deleting(endpoint)
        if self.routing_table is not None:  # no more traffic from here on
            self.routing_table.remove(endpoint.id)
        if self.backend is None:
            if not await self.repository.remove(endpoint.id, operation_id):
                raise NotFound(f"no endpoint named {name!r}")
            return
        self.teardowns.start(endpoint, operation_id)
