"""Per-owner quotas: what an owner's endpoints use, and whether one more request still fits.

Called by the store (`store/repository.py`), which computes an owner's usage inside the
transaction that inserts or updates an endpoint, so the check and the write are atomic.
The limits themselves come from `config/quotas.py` (server-wide defaults, per-owner
overrides given with the API keys).

An endpoint is counted at the most it may scale to: `max_workers` replica groups, each of
`gpus x nodes_per_worker` GPUs. Messages name the owner's own usage and limit only; another
owner's usage is never part of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llm_launch.domain.errors import FieldError
from llm_launch.domain.spec import EndpointSpec

__all__ = ["Quota", "Usage", "quota_problems"]


@dataclass(frozen=True)
class Quota:
    """Limits of one owner; None means unlimited."""

    max_endpoints: int | None = None
    max_groups: int | None = None
    max_gpus: int | None = None


@dataclass(frozen=True)
class Usage:
    """What some endpoints take at their largest: endpoints, replica groups and GPUs."""

    endpoints: int = 0
    groups: int = 0
    gpus: int = 0

    @classmethod
    def of(cls, spec: EndpointSpec) -> Usage:
        return cls(1, spec.max_workers, spec.gpus_per_group * spec.max_workers)

    @classmethod
    def total(cls, specs: Iterable[EndpointSpec]) -> Usage:
        usage = cls()
        for spec in specs:
            usage = usage + cls.of(spec)
        return usage

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.endpoints + other.endpoints, self.groups + other.groups, self.gpus + other.gpus
        )


# (usage attribute = unit, quota attribute, how an endpoint counts, field the request sets)
_DIMENSIONS = (
    ("endpoints", "max_endpoints", "", "name"),
    ("groups", "max_groups", "; an endpoint counts its max_workers", "max_workers"),
    ("gpus", "max_gpus", "; an endpoint counts gpus x nodes_per_worker x max_workers", "gpus"),
)
_UNITS = {"endpoints": "endpoints", "groups": "replica groups", "gpus": "GPUs"}


def quota_problems(
    owner: str,
    quota: Quota,
    in_use: Usage,
    requested: EndpointSpec,
    *,
    replacing: EndpointSpec | None = None,
    deleting: Usage | None = None,
) -> list[FieldError]:
    """Why `requested` does not fit `owner`'s quota next to `in_use`; empty if it fits.

    `in_use` is what the owner's other endpoints take. For an update, `replacing` is the
    endpoint's current spec: the update adds no endpoint, and a dimension it does not grow is
    not checked, so an owner over a lowered limit can still scale down or relabel.
    `deleting` is the part of `in_use` held by endpoints being deleted: they count until
    their teardown ends, and a refusal says so (the usage will drop without the owner).
    """
    wanted = Usage.of(requested)
    before = Usage.of(replacing) if replacing is not None else Usage()
    problems = []
    for used_name, limit_name, how, field in _DIMENSIONS:
        limit: int | None = getattr(quota, limit_name)
        used: int = getattr(in_use, used_name)
        adding: int = getattr(wanted, used_name)
        if limit is None or (replacing is not None and adding <= getattr(before, used_name)):
            continue
        if used + adding > limit:
            others = " by its other endpoints" if replacing is not None else ""
            held: int = getattr(deleting, used_name) if deleting is not None else 0
            leaving = (
                f", {held} of them held by endpoints being deleted until their teardown ends"
                if held
                else ""
            )
            problems.append(
                FieldError(
                    field,
                    f"owner {owner} would use {used + adding} {_UNITS[used_name]} ({used} in use"
                    f"{others}{leaving} + {adding} requested); the limit is {limit} "
                    f"({limit_name}{how})",
                )
            )
    return problems
