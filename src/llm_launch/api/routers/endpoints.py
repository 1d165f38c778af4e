"""`/v1/llm/model-endpoints`: Launch's create, list, get, update and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from llm_launch.api.auth import current_owner
from llm_launch.api.responses import EndpointResponse, ListEndpointsResponse
from llm_launch.api.schemas import (
    CreateEndpointRequest,
    DeleteResponse,
    ErrorResponse,
    TaskResponse,
    UpdateEndpointRequest,
)
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.names import dns1123_label_problem
from llm_launch.services.endpoints import EndpointService
from llm_launch.store.repository import EndpointOrder

router = APIRouter(
    prefix="/v1/llm/model-endpoints",
    tags=["model endpoints"],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)

Owner = Annotated[str, Depends(current_owner)]


def _service(request: Request) -> EndpointService:
    service: EndpointService = request.app.state.endpoints
    return service


Service = Annotated[EndpointService, Depends(_service)]


def _checked_name(name: str) -> str:
    """An endpoint name from the URL. One that breaks the naming rule can name no endpoint;
    refusing it here (422, naming `name`) also keeps what the database cannot store (a
    NUL byte, which PostgreSQL refuses) from reaching it."""
    if (problem := dns1123_label_problem(name)) is not None:
        raise InvalidRequest([FieldError("name", problem)])
    return name


Name = Annotated[str, Depends(_checked_name)]  # a dependency: FastAPI reads `name` from the path


def _answer(service: EndpointService, endpoint: Endpoint) -> EndpointResponse:
    return EndpointResponse.from_endpoint(
        endpoint, service.serving_point(endpoint), service.group_details(endpoint)
    )


@router.post("", response_model=TaskResponse)
async def create_endpoint(
    body: CreateEndpointRequest, owner: Owner, service: Service
) -> TaskResponse:
    _, task_id = await service.create(owner, body.model_dump(exclude_unset=True))
    return TaskResponse(endpoint_creation_task_id=task_id)


@router.get("", response_model=ListEndpointsResponse)
async def list_endpoints(
    owner: Owner,
    service: Service,
    name: Annotated[str | None, Query()] = None,
    include_deleting: Annotated[
        bool,
        Query(
            description="also list endpoints whose teardown is still going on "
            "(DELETE_IN_PROGRESS; status_reason says how it goes, a failure included)"
        ),
    ] = False,
    order_by: Annotated[
        EndpointOrder,
        Query(
            description="Launch's order: newest or oldest (by creation) first, or "
            "alphabetical (by name); oldest when left out"
        ),
    ] = EndpointOrder.OLDEST,
) -> ListEndpointsResponse:
    if name is not None and dns1123_label_problem(name) is not None:
        # No endpoint can have it, so none matches; the database never sees it (a NUL in
        # it was a 500 on PostgreSQL).
        return ListEndpointsResponse(model_endpoints=[])
    endpoints = await service.list(owner, name, include_deleting=include_deleting, order=order_by)
    return ListEndpointsResponse(model_endpoints=[_answer(service, e) for e in endpoints])


@router.get("/{name}", response_model=EndpointResponse)
async def get_endpoint(name: Name, owner: Owner, service: Service) -> EndpointResponse:
    return _answer(service, await service.get(owner, name))


@router.put("/{name}", response_model=TaskResponse)
async def update_endpoint(
    name: Name, body: UpdateEndpointRequest, owner: Owner, service: Service
) -> TaskResponse:
    _, task_id = await service.update(owner, name, body.model_dump(exclude_unset=True))
    return TaskResponse(endpoint_creation_task_id=task_id)


@router.get("/{name}/logs", response_class=PlainTextResponse)
async def endpoint_logs(
    name: Name,
    owner: Owner,
    service: Service,
    group: Annotated[int, Query(ge=0)] = 0,
    rank: Annotated[int | None, Query(ge=0, description="engine rank; omit for the forwarder")] = 0,
    forwarder: bool = False,
    tail: Annotated[int, Query(ge=1, le=10000)] = 200,
    follow: Annotated[
        bool,
        Query(
            description="after the last lines, stream what the process writes, as it writes "
            "it, until the client leaves or the log ends (the endpoint is deleted; on "
            "Kubernetes, the container stops)"
        ),
    ] = False,
) -> Response:
    """The last lines of one process's log: an engine rank, or the leader's forwarder."""
    process = "forwarder" if forwarder else f"rank-{rank}"
    if follow:
        lines = await service.follow_logs(owner, name, group, process, tail)
        return StreamingResponse(lines, media_type="text/plain; charset=utf-8")
    return PlainTextResponse(await service.logs(owner, name, group, process, tail))


@router.delete("/{name}", response_model=DeleteResponse)
async def delete_endpoint(name: Name, owner: Owner, service: Service) -> DeleteResponse:
    """Answers at once: the endpoint leaves GET, list and the inference routes now, and its
    teardown goes on in the background (`?include_deleting=true` on the list shows it);
    its name and quota are freed when everything it ran is gone."""
    await service.delete(owner, name)
    return DeleteResponse(deleted=True)
