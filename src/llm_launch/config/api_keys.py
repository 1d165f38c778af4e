"""API keys: where they come from (a file, or an environment setting) and who owns each.

Format, in a file (one per line, '#' starts a comment) or in LLM_LAUNCH_API_KEYS
(comma-separated): `OWNER:KEY`, optionally followed by the owner's quota overrides
(`OWNER:KEY max_endpoints=5 max_gpus=16`, see `config/quotas.py`). Owners appear in
Kubernetes labels, so they must be valid label values. Keys contain no whitespace; they are
compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llm_launch.config.quotas import (
    Overrides,
    QuotaConfigError,
    merge_overrides,
    parse_quota_options,
)
from llm_launch.domain.names import label_value_problem

MIN_KEY_LENGTH = 16
LOCAL_OWNER = "local"


class ApiKeyConfigError(ValueError):
    """The keys configuration is malformed; the message says where (never the key itself)."""


@dataclass(frozen=True)
class ApiKeys:
    """Maps keys to owners. Empty means single-owner local mode."""

    _digests: tuple[tuple[bytes, str], ...] = ()
    # (owner, quota options, where they were given), as written; merged by `quota_overrides`.
    _quota_entries: tuple[tuple[str, Overrides, str], ...] = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> ApiKeys:
        return cls(tuple((_digest(key), owner) for owner, key in pairs))

    @property
    def quota_overrides(self) -> dict[str, dict[str, int | None]]:
        """Each owner's quota options; validated to agree when the keys were loaded."""
        return merge_overrides(self._quota_entries)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @property
    def owners(self) -> set[str]:
        return {owner for _, owner in self._digests}

    def owner_for(self, key: str) -> str | None:
        """The owner of `key`, or None. Compares against every entry, in constant time each."""
        presented = _digest(key)
        found: str | None = None
        for digest, owner in self._digests:
            if hmac.compare_digest(presented, digest):
                found = owner
        return found


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of key length.
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(text: str, *, source: str, separator: str = "\n") -> ApiKeys:
    pairs: list[tuple[str, str]] = []
    quotas: list[tuple[str, Overrides, str]] = []
    for number, raw in enumerate(text.split(separator), start=1):
        entry = raw.split("#", 1)[0].strip() if separator == "\n" else raw.strip()
        if not entry:
            continue
        owner, colon, rest = entry.partition(":")
        key, *options = rest.split() or [""]
        owner = owner.strip()
        where = f"{source} entry {number}"
        if not colon or not owner or not key:
            raise ApiKeyConfigError(f"{where}: expected OWNER:KEY")
        problem = label_value_problem(owner)
        if problem:
            raise ApiKeyConfigError(f"{where}: owner {owner!r}: {problem}")
        if len(key) < MIN_KEY_LENGTH:
            raise ApiKeyConfigError(
                f"{where}: key of owner {owner!r} is shorter than {MIN_KEY_LENGTH} characters"
            )
        pairs.append((owner, key))
        if options:
            quotas.append((owner, _quota_options(options, where), where))
    keys = [key for _, key in pairs]
    if len(set(keys)) != len(keys):
        raise ApiKeyConfigError(f"{source}: the same key is given twice")
    return _with_quotas(ApiKeys.from_pairs(pairs)._digests, quotas)


def _quota_options(words: list[str], where: str) -> Overrides:
    try:
        return parse_quota_options(words, where)
    except QuotaConfigError as exc:
        raise ApiKeyConfigError(str(exc)) from exc


def _with_quotas(
    digests: tuple[tuple[bytes, str], ...], quotas: Iterable[tuple[str, Overrides, str]]
) -> ApiKeys:
    """The keys, once every owner's quota options are known to agree."""
    keys = ApiKeys(digests, tuple(quotas))
    try:
        keys.quota_overrides  # noqa: B018 - merging is the check
    except QuotaConfigError as exc:
        raise ApiKeyConfigError(str(exc)) from exc
    return keys


def load_api_keys(path: Path | None, env_value: str | None) -> ApiKeys:
    """Merge keys from a file and from the environment setting; either may be absent."""
    parts: list[ApiKeys] = []
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ApiKeyConfigError(f"cannot read API keys file {path}: {exc.strerror}") from exc
        parts.append(parse_api_keys(text, source=str(path)))
    if env_value:
        parts.append(parse_api_keys(env_value, source="LLM_LAUNCH_API_KEYS", separator=","))
    return _with_quotas(
        tuple(d for part in parts for d in part._digests),
        [q for part in parts for q in part._quota_entries],
    )
