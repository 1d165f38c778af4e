"""Kubernetes errors, translated at the client boundary into llm-launch's own error tree.

`client.KubeClient` is the only caller of `from_status`: every non-2xx answer of the API
server and every connection failure becomes one of these (or a plain domain error), so no
`kubernetes_asyncio` or `aiohttp` exception escapes the package (STYLE.md item 6). The
reconciler records their messages as `status_reason`; the API maps the domain bases
(Conflict, NotFound, InvalidRequest, UpstreamFailed) to HTTP once.
"""

from __future__ import annotations

import json
from typing import Any

from llm_launch.domain.errors import (
    Conflict,
    FieldError,
    InvalidRequest,
    LaunchError,
    NotFound,
    UpstreamFailed,
)


class KubernetesError(UpstreamFailed):
    """The Kubernetes API failed in a way the caller cannot fix by changing the request."""


class KubernetesUnavailable(KubernetesError):
    """No answer, a connection error, a 5xx or a 429: worth retrying later (`retry_after_s`:
    the server's `Retry-After`, when it sent one)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class KubernetesForbidden(KubernetesError):
    """401/403: the control plane's credentials lack a permission (RBAC)."""


class KubeconfigError(KubernetesError):
    """No usable kubeconfig or in-cluster service account."""


class ResourceExpired(KubernetesError):
    """410 Gone: a watch's resourceVersion is too old; the watcher must list again."""


class DeletionTimeout(KubernetesError):
    """Deleted objects were still present when the deadline passed."""


class ObjectConflict(Conflict):
    """409: the object exists already, or changed under us, or belongs to someone else."""


class ObjectBeingDeleted(ObjectConflict):
    """An object of ours still has a deletionTimestamp: apply again once it is gone."""


class ObjectNotFound(NotFound):
    """404: the object (or its kind, when a CRD is not installed) does not exist."""


class ObjectInvalid(InvalidRequest):
    """422: the API server rejected a manifest; `errors` carry its field paths."""


def status_body(raw: bytes | str | None) -> dict[str, Any]:
    """The `Status` object of an error answer ({} when the body is not one)."""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {"message": raw.decode(errors="replace") if isinstance(raw, bytes) else raw}
    return body if isinstance(body, dict) else {}


def from_status(
    code: int, body: dict[str, Any], what: str, retry_after: str | None = None
) -> LaunchError:
    """Translate one error answer (`code`, its Status `body`, its `Retry-After` header)
    about `what` (e.g. "apply LeaderWorkerSet llm-x") into our error tree."""
    message = str(body.get("message") or f"HTTP {code}")
    reason = str(body.get("reason") or "")
    text = f"{what}: {message}"
    if code == 404:
        return ObjectNotFound(text)
    if code == 409:
        return ObjectConflict(text)
    if code == 410:
        return ResourceExpired(text)
    if code == 422 or reason == "Invalid":
        return ObjectInvalid(_field_errors(body, what) or [FieldError(what, message)])
    if code in (401, 403):
        return KubernetesForbidden(
            f"{text} (the control plane's Kubernetes credentials lack this permission; "
            "check its ServiceAccount's Role)"
        )
    if code == 429 or code >= 500:
        return KubernetesUnavailable(
            f"{text} (Kubernetes API answered {code}; will retry)", _seconds(retry_after, body)
        )
    return KubernetesError(f"{text} (HTTP {code} {reason})".rstrip())


def _seconds(retry_after: str | None, body: dict[str, Any]) -> float | None:
    """When to come back: the `Retry-After` header in seconds (an API server's 429 sends
    one, and `details.retryAfterSeconds` in its Status body; the HTTP-date form is not
    used by API servers and is ignored)."""
    details = body.get("details")
    candidates = [
        retry_after,
        details.get("retryAfterSeconds") if isinstance(details, dict) else None,
    ]
    for value in candidates:
        try:
            seconds = float(str(value).strip())
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _field_errors(body: dict[str, Any], what: str) -> list[FieldError]:
    details = body.get("details") or {}
    causes = details.get("causes") if isinstance(details, dict) else None
    errors = []
    for cause in causes or []:
        if not isinstance(cause, dict):
            continue
        field = str(cause.get("field") or what)
        message = str(cause.get("message") or cause.get("reason") or "invalid")
        errors.append(FieldError(field, f"{what}: {message}"))
    return errors
