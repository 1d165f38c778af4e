"""OpenAI's `GET /v2/models` and `GET /v2/models/{model}`: the caller's endpoints as models.

The `/v2` completion routes take an endpoint's name as `model`, and its engine serves under
that name; these routes let OpenAI clients discover those names (`models.list()`,
`models.retrieve(name)`). Each caller sees only their own endpoints; another owner's, an
unknown name and an endpoint being deleted are a 404, as on every other route.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from llm_launch.api.auth import current_owner
from llm_launch.api.schemas import ErrorResponse
from llm_launch.domain.endpoint import Endpoint
from llm_launch.services.endpoints import EndpointService

router = APIRouter(
    prefix="/v2/models",
    tags=["inference"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)

Owner = Annotated[str, Depends(current_owner)]


class ModelObject(BaseModel):
    """OpenAI's model object: `id` is the endpoint's name, the `model` to send."""

    id: str
    object: Literal["model"] = "model"
    created: int  # Unix seconds: when the endpoint was created
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def _service(request: Request) -> EndpointService:
    service: EndpointService = request.app.state.endpoints
    return service


Service = Annotated[EndpointService, Depends(_service)]


def _model(endpoint: Endpoint) -> ModelObject:
    return ModelObject(
        id=endpoint.name,
        created=int(endpoint.created_at.timestamp()),
        owned_by=endpoint.owner,
    )


@router.get("", response_model=ModelList)
async def list_models(owner: Owner, service: Service) -> ModelList:
    # Oldest first, the endpoint list's default; endpoints being deleted are left out.
    return ModelList(data=[_model(e) for e in await service.list(owner)])


# `:path`: a model name with a slash (a Hugging Face id, say) reaches this route and gets
# its 404 naming it, rather than the router's anonymous one.
@router.get("/{model:path}", response_model=ModelObject)
async def retrieve_model(model: str, owner: Owner, service: Service) -> ModelObject:
    return _model(await service.get(owner, model))
