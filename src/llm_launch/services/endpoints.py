"""Endpoint use cases, called by the API routers: validate, persist, hand work to a backend.

Create and update only record the new spec (status UPDATE_PENDING); the reconciler
makes a backend carry it out. Delete tears down through the backend before the
record goes, so a failed teardown never leaves processes or objects without a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_launch.backends.base import Backend
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import Conflict, InvalidRequest, LaunchError, NotFound, UpstreamFailed
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.spec import EndpointSpec, apply_update, build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.store.repository import EndpointRepository


class EndpointService:
    def __init__(
        self,
        repository: EndpointRepository,
        catalog: HardwareCatalog,
        backend: Backend | None = None,
    ) -> None:
        self.repository = repository
        self.catalog = catalog
        self.backend = backend

    async def create(self, owner: str, fields: Mapping[str, Any]) -> tuple[Endpoint, str]:
        """Validate and store a new endpoint; returns it and its creation task id."""
        spec = build_spec(fields, self.catalog)
        self._check_backend(spec)
        return await self.repository.create(owner, spec)

    async def get(self, owner: str, name: str) -> Endpoint:
        return await self.repository.get(owner, name)

    async def list(self, owner: str, name: str | None = None) -> list[Endpoint]:
        return await self.repository.list_owned(owner, name)

    async def update(
        self, owner: str, name: str, changes: Mapping[str, Any]
    ) -> tuple[Endpoint, str]:
        current = await self.repository.get(owner, name)
        if current.status is EndpointStatus.DELETE_IN_PROGRESS:
            raise Conflict(f"endpoint {name!r} is being deleted and cannot be updated")
        spec = apply_update(current.spec, changes, self.catalog)
        self._check_backend(spec)
        return await self.repository.update_spec(current, spec)

    def _check_backend(self, spec: EndpointSpec) -> None:
        if self.backend is not None and (errors := self.backend.check(spec)):
            raise InvalidRequest(errors)

    async def logs(self, owner: str, name: str, group: int, process: str, tail: int) -> str:
        endpoint = await self.repository.get(owner, name)
        if self.backend is None:
            raise NotFound(f"endpoint {name!r} runs nowhere yet, so it has no logs")
        return await self.backend.logs(endpoint, group, process, tail)

    async def delete(self, owner: str, name: str) -> None:
        """Tear the endpoint down and remove its record. Safe to repeat after a failure."""
        endpoint = await self.repository.get(owner, name)
        operation_id = await self.repository.mark_deleting(endpoint)
        if self.backend is not None:
            try:
                await self.backend.teardown(endpoint)
            except LaunchError as exc:
                await self.repository.set_status(
                    endpoint.id,
                    EndpointStatus.DELETE_IN_PROGRESS,
                    f"teardown failed, retry the delete: {exc.message}",
                )
                raise UpstreamFailed(
                    f"could not tear down endpoint {name!r}: {exc.message}"
                ) from exc
        await self.repository.remove(endpoint.id, operation_id)
