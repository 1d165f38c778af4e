"""The error tree of llm-launch.

Services raise these; the API maps each class to one HTTP status in one place
(`api/errors.py`), and backends translate third-party errors into them at their
boundary, so no library exception leaks upwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One broken rule, with the dotted path of the field that broke it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class LaunchError(Exception):
    """Base of every error llm-launch raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(LaunchError):
    """The request breaks one or more rules; nothing was changed."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidRequest needs at least one FieldError")
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class QuotaExceeded(InvalidRequest):
    """The request is valid but would take its owner past a quota; nothing was changed."""


class NotFound(LaunchError):
    """The object does not exist, or belongs to another owner (which we do not reveal)."""


class Conflict(LaunchError):
    """The request is valid but clashes with the current state (duplicate name, concurrent edit)."""


class Unauthenticated(LaunchError):
    """No API key, or one that maps to no owner."""


class ServiceUnavailable(LaunchError):
    """A dependency (engine, backend) cannot serve the request right now."""


class UpstreamFailed(LaunchError):
    """An upstream (engine, forwarder, Kubernetes API) answered with an error or not at all."""


class UpstreamTimeout(UpstreamFailed):
    """An upstream accepted the request but did not answer in time."""
