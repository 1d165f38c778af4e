"""The OpenAPI document's security: the three ways of sending an API key, required by
every operation the guard protects (`api.guard.is_protected`), so that generated clients
and tools such as schemathesis know to authenticate. Installed by `api.app.create_app`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from llm_launch.api.guard import is_protected
from llm_launch.api.schemas import ErrorResponse

__all__ = ["SECURITY_SCHEMES", "install_security"]

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKeyBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The API key as the username (as Launch's client sends it).",
    },
    "apiKeyBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer KEY",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
# Any one of them is enough: a list of alternatives, each a requirement of one scheme.
_REQUIREMENT: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def install_security(app: FastAPI) -> None:
    """Make `app.openapi()` declare the key schemes and require them where the guard does."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        document = plain()  # FastAPI builds it once and caches it; we amend it once
        components = document.setdefault("components", {})
        if "securitySchemes" not in components:
            _declare(document, components)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(document: dict[str, Any], components: dict[str, Any]) -> None:
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas.setdefault("ErrorResponse", error_schema)
    for path, operations in document.get("paths", {}).items():
        if not is_protected(path):
            continue
        for method, operation in operations.items():
            if method not in _HTTP_METHODS:
                continue
            operation["security"] = _REQUIREMENT
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _error_response("No API key, or one that is not valid."))
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("The body is over the size limit."))


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}
