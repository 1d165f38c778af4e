"""API keys: where they come from (a file, or an environment setting) and who owns each.

Format, in a file (one per line, '#' starts a comment) or in LLM_LAUNCH_API_KEYS
(comma-separated): `OWNER:KEY`. Owners appear in Kubernetes labels, so they must be
valid label values. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llm_launch.domain.names import label_value_problem

MIN_KEY_LENGTH = 16
LOCAL_OWNER = "local"


class ApiKeyConfigError(ValueError):
    """The keys configuration is malformed; the message says where (never the key itself)."""


@dataclass(frozen=True)
class ApiKeys:
    """Maps keys to owners. Empty means single-owner local mode."""

    _digests: tuple[tuple[bytes, str], ...] = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> ApiKeys:
        return cls(tuple((_digest(key), owner) for owner, key in pairs))

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
    for number, raw in enumerate(text.split(separator), start=1):
        entry = raw.split("#", 1)[0].strip() if separator == "\n" else raw.strip()
        if not entry:
            continue
        owner, colon, key = entry.partition(":")
        owner, key = owner.strip(), key.strip()
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
    keys = [key for _, key in pairs]
    if len(set(keys)) != len(keys):
        raise ApiKeyConfigError(f"{source}: the same key is given twice")
    return ApiKeys.from_pairs(pairs)


def load_api_keys(path: Path | None, env_value: str | None) -> ApiKeys:
    """Merge keys from a file and from the environment setting; either may be absent."""
    pairs: list[tuple[bytes, str]] = []
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ApiKeyConfigError(f"cannot read API keys file {path}: {exc.strerror}") from exc
        pairs += parse_api_keys(text, source=str(path))._digests
    if env_value:
        pairs += parse_api_keys(env_value, source="LLM_LAUNCH_API_KEYS", separator=",")._digests
    return ApiKeys(tuple(pairs))
