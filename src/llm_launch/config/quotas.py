"""Quota configuration: server-wide defaults (`serve` flags) and per-owner overrides.

Defaults come from `llm-launch serve --quota-max-endpoints/--quota-max-groups/--quota-max-gpus`
(or LLM_LAUNCH_QUOTA_MAX_*). Overrides follow an owner's key in the API keys configuration
(`config/api_keys.py`), as `OWNER:KEY max_endpoints=5 max_gpus=16`; every option an owner's
entries give must agree, so an owner with several keys cannot end up with two limits.
A limit is a whole number >= 0, or `unlimited`. The endpoint service asks `QuotaBook.for_owner`
for the limits it hands to the store's atomic check (`domain/quotas.py` holds the rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llm_launch.domain.quotas import Quota

__all__ = [
    "DEFAULT_QUOTA",
    "QUOTA_OPTIONS",
    "QuotaBook",
    "QuotaConfigError",
    "merge_overrides",
    "parse_limit",
    "parse_quota_options",
]

QUOTA_OPTIONS = tuple(f.name for f in dataclasses.fields(Quota))
UNLIMITED = "unlimited"
# Per owner unless configured: enough for real work, small enough that one owner cannot fill
# a shared server by mistake or on purpose. GPUs depend on the cluster, so no default limit.
DEFAULT_QUOTA = Quota(max_endpoints=50, max_groups=100, max_gpus=None)

Overrides = Mapping[str, int | None]


class QuotaConfigError(ValueError):
    """A quota setting is malformed or contradicts another; the message says where."""


def parse_limit(text: str, where: str) -> int | None:
    """A limit: a whole number >= 0, or `unlimited` (None)."""
    value = text.strip()
    if value.lower() == UNLIMITED:
        return None
    if not value.isdigit():
        raise QuotaConfigError(f"{where}: expected a whole number >= 0 or {UNLIMITED!r}")
    return int(value)


def parse_quota_options(words: Iterable[str], where: str) -> dict[str, int | None]:
    """Options such as `max_gpus=16` following an owner's key; an unknown name is an error."""
    options: dict[str, int | None] = {}
    for number, word in enumerate(words, start=1):
        name, equals, value = word.partition("=")
        if not equals or name not in QUOTA_OPTIONS:
            # Said by position, never echoed: a key with a space in it would land here.
            raise QuotaConfigError(
                f"{where}: word {number} after the key is not a quota option; use NAME=LIMIT "
                f"with NAME one of {', '.join(QUOTA_OPTIONS)} (keys contain no spaces)"
            )
        if name in options:
            raise QuotaConfigError(f"{where}: {name} is given twice")
        options[name] = parse_limit(value, f"{where}: {name}")
    return options


def merge_overrides(
    entries: Iterable[tuple[str, Overrides, str]],
) -> dict[str, dict[str, int | None]]:
    """Combine (owner, options, where) entries; the same option with two values is an error."""
    merged: dict[str, dict[str, int | None]] = {}
    origin: dict[tuple[str, str], str] = {}
    for owner, options, where in entries:
        mine = merged.setdefault(owner, {})
        for name, limit in options.items():
            if name in mine and mine[name] != limit:
                raise QuotaConfigError(
                    f"{where}: owner {owner!r} has {name}={_show(limit)}, but "
                    f"{origin[owner, name]} gives {name}={_show(mine[name])}; "
                    "give each owner's quota once, or the same on every key"
                )
            mine[name] = limit
            origin.setdefault((owner, name), where)
    return {owner: options for owner, options in merged.items() if options}


def _show(limit: int | None) -> str:
    return UNLIMITED if limit is None else str(limit)


@dataclass(frozen=True)
class QuotaBook:
    """The defaults, and the owners whose keys override some of them."""

    defaults: Quota = DEFAULT_QUOTA
    overrides: Mapping[str, Overrides] = field(default_factory=dict)

    def for_owner(self, owner: str) -> Quota:
        return dataclasses.replace(self.defaults, **self.overrides.get(owner, {}))
