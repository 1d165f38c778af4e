"""Names and labels that end up in Kubernetes objects, and the limits they must keep."""

from __future__ import annotations

import re

# Every Kubernetes object derived from an endpoint is named
# K8S_NAME_PREFIX + endpoint name + "-" + a suffix of OWNER_SUFFIX_LENGTH characters that
# hashes the owner (and name), so that two owners' endpoints of one name get different objects.
K8S_NAME_PREFIX = "llm-"
OWNER_SUFFIX_LENGTH = 6
# Label keys under this prefix are written by llm-launch; users may not set them.
RESERVED_LABEL_PREFIX = "llm-launch.io"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Deployments, Services and label values stop at 63 characters.
_SINGLE_NODE_LIMIT = 63


def max_name_length(*, nodes_per_worker: int, max_workers: int) -> int:
    """Longest endpoint name whose Kubernetes objects stay within their limits.

    A LeaderWorkerSet name may have at most 51 - int(replicas / 10) characters (its
    pods are named `<lws>-<group>-<index>` and must stay valid DNS labels); the
    objects also carry our prefix and the owner suffix (`llm-<name>-<suffix>`).
    """
    taken = len(K8S_NAME_PREFIX) + 1 + OWNER_SUFFIX_LENGTH
    if nodes_per_worker > 1:
        return 51 - max_workers // 10 - taken
    return _SINGLE_NODE_LIMIT - taken


def dns1123_label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label, or None if it is one."""
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"must be at most 63 characters (got {len(value)})"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid Kubernetes label key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return "a label key has at most one '/'"
    if prefix:
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            return f"label key prefix {prefix!r} must be a DNS-1123 subdomain"
        if prefix == RESERVED_LABEL_PREFIX or prefix.endswith("." + RESERVED_LABEL_PREFIX):
            return f"label key prefix {prefix!r} is reserved for llm-launch"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            "label key name must be 1-63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid Kubernetes label value, or None."""
    if value == "":
        return None
    if len(value) > 63 or not _LABEL_NAME.fullmatch(value):
        return (
            "label value must be at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None
