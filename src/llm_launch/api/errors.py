"""Map domain errors and request-parsing errors to HTTP responses, once, for every route.

`field_errors` turns pydantic's errors into field errors; the API's handler and
`api.schemas.request_fields` (the CLI's `plan` and `render`) both use it, so a body is
refused with the same messages wherever it is checked. Both also run the domain's rules
on the fields that did parse (`api.body_errors`): one 422 names every problem of a body,
its type errors and its broken rules alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_launch.api.auth import current_owner
from llm_launch.api.body_errors import parsed_part
from llm_launch.domain.errors import (
    Conflict,
    FieldError,
    InvalidRequest,
    LaunchError,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    Unauthenticated,
    UpstreamFailed,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from llm_launch.services.endpoints import EndpointService

_STATUS: tuple[tuple[type[LaunchError], int], ...] = (
    # 403, as Kubernetes answers a ResourceQuota: valid, but refused for this owner (not a
    # 429: waiting does not help, only deleting or a higher limit does). Before its parent.
    (QuotaExceeded, 403),
    (InvalidRequest, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (ServiceUnavailable, 503),
    (UpstreamTimeout, 504),  # before its parent class: the first match wins
    (UpstreamFailed, 502),
)


def error_body(message: str, errors: Sequence[FieldError] = ()) -> dict[str, Any]:
    return {"detail": message, "errors": [{"field": e.field, "message": e.message} for e in errors]}


def unauthenticated_headers() -> dict[str, str]:
    """The challenge a 401 carries: the ways a key may be sent."""
    return {"WWW-Authenticate": 'Basic realm="llm-launch", Bearer'}


def _launch_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LaunchError)
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    errors = exc.errors if isinstance(exc, InvalidRequest) else []
    headers = unauthenticated_headers() if status == 401 else None
    return JSONResponse(error_body(exc.message, errors), status_code=status, headers=headers)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own refusals (no such route, wrong method, a body that
    json.loads cannot read) in our shape: `detail` and `errors`."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI turns whatever json.loads raised (other than a plain syntax error, which
        # is a RequestValidationError) into "There was an error parsing the body".
        problem = FieldError("body", _unparsable(exc.__cause__))
        message = f"invalid request: {problem}"
    else:
        problem = FieldError(_HTTP_ERROR_FIELDS.get(exc.status_code, "request"), str(exc.detail))
        message = str(exc.detail)
    return JSONResponse(
        error_body(message, [problem]), status_code=exc.status_code, headers=exc.headers
    )


_HTTP_ERROR_FIELDS = {404: "path", 405: "method"}


def _unparsable(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        return "is not valid JSON: nested too deeply"
    if isinstance(cause, UnicodeError):
        return "is not valid JSON: not UTF-8 text"
    return "is not valid JSON"


def _describe(error: Any) -> FieldError:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    # pydantic names the union member that failed (e.g. "int", "function-after"); drop it.
    loc = [
        p for p in loc if not p.startswith(("function-", "constrained-")) and p not in _TYPE_NAMES
    ]
    path = ".".join(loc) or "body"
    if error.get("type") == "extra_forbidden":
        return FieldError(path, "unknown field; check its spelling against the API reference")
    if error.get("type") == "missing":
        return FieldError(path, "is required")
    if error.get("type") == "json_invalid":
        return FieldError("body", f"is not valid JSON: {error.get('ctx', {}).get('error', '')}")
    return FieldError(path, str(error.get("msg", "is invalid")))


_TYPE_NAMES = {"int", "float", "str", "bool", "list[any]", "dict[str,any]", "list", "dict"}


def _one_message(messages: list[str]) -> str:
    """Fold the per-member errors of a union field ("a valid integer", "a valid string")."""
    if len(messages) == 1:
        return messages[0]
    prefix = "Input should be a valid "
    if all(m.startswith(prefix) for m in messages):
        return prefix + " or ".join(m.removeprefix(prefix) for m in messages)
    return "; ".join(messages)


def field_errors(pydantic_errors: Iterable[Any]) -> list[FieldError]:
    """One FieldError per field pydantic refused, its messages folded into one."""
    by_field: dict[str, list[str]] = {}
    for item in pydantic_errors:
        described = _describe(item)
        messages = by_field.setdefault(described.field, [])
        if described.message not in messages:
            messages.append(described.message)
    return [FieldError(path, _one_message(messages)) for path, messages in by_field.items()]


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A body the request model refused: its type errors, and the domain's rules on the
    fields that did parse (`api.body_errors`), all in one answer."""
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    errors += await _rule_errors(request, exc)
    message = "invalid request: " + "; ".join(str(e) for e in errors)
    return JSONResponse(error_body(message, errors), status_code=422)


async def _rule_errors(request: Request, exc: RequestValidationError) -> list[FieldError]:
    """What the endpoint service's rules say of the body's fields that parsed: a create,
    or (with a `name` in the path) an update of that endpoint. Nothing is stored."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None) if isinstance(route, APIRoute) else None
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    service: EndpointService | None = getattr(request.app.state, "endpoints", None)
    if service is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    name = request.path_params.get("name")
    part = parsed_part(model, exc.body, exc.errors(), creating=name is None)
    if part is None:
        return []
    owner = await current_owner(request)
    first, second = part.guesses
    return part.beside(
        await service.rule_errors(owner, name, first),
        await service.rule_errors(owner, name, second),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LaunchError, _launch_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
