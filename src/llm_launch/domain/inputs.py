"""Checks of raw input values: text that reaches argv, env or paths, and free-form JSON.

Called by `domain.validation` (every spec, however built) and by `api.schemas` (before
pydantic touches a free-form field, so nothing recursive sees an unbounded document).
Each check returns why a value is refused, or None; none of them recurses.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llm_launch.domain.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_ECHO_CHARS,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
)

# Characters a Jinja chat template legitimately holds; every other C0/C1 control is refused.
LAYOUT_CHARACTERS = frozenset("\t\n\r")


def clip(value: object) -> str:
    """`repr(value)`, cut short, for quoting a bad value in an error message."""
    if isinstance(value, int) and value.bit_length() > 128:
        # repr of a huge int is slow, and refused past 4300 digits
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "...(cut)"


def text_problem(value: object, *, max_bytes: int, allow_layout: bool = False) -> str | None:
    """Why `value` may not be passed as one argv item, env value or path, or None.

    Refused: a non-string; NUL and every other control character (C0, DEL, C1), which
    truncate or corrupt argv and env strings and log lines (with `allow_layout`, tab,
    newline and carriage return are allowed); lone surrogates, which cannot be encoded to
    UTF-8 and so cannot be stored or passed on; more than `max_bytes` bytes of UTF-8.
    """
    if not isinstance(value, str):
        return f"must be a string (got {type(value).__name__})"
    for index, char in enumerate(value):
        if _is_control(char) and not (allow_layout and char in LAYOUT_CHARACTERS):
            return f"holds the control character {char!r} at position {index}; remove it"
        if "\ud800" <= char <= "\udfff":
            return f"holds a lone surrogate {char!r} at position {index}, which is not text"
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        return f"must be at most {max_bytes} bytes of UTF-8 (got {size})"
    return None


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def json_problem(
    value: object,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int = MAX_JSON_BYTES,
    no_controls: bool = False,
) -> tuple[str, str] | None:
    """Why `value` is not a bounded JSON document: (path inside it, message), or None.

    Walks with an explicit stack, so a document of any depth is refused without recursion.
    Refused: nesting deeper than `max_depth` (a scalar is depth 0, `{}` is 1), NaN and
    ±Infinity (not JSON: PostgreSQL refuses them and SQLite stores null), integers outside
    a signed 64-bit range, NUL and lone surrogates in strings and keys (no database stores
    them; with `no_controls`, every control character), non-JSON types, and more than
    `max_bytes` bytes once serialized.
    """
    stack: list[tuple[_Path, object, int]] = [(None, value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > max_depth:
                return _spell(path), f"is nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if not isinstance(key, str | int):
                    return _spell(path), "object keys must be strings"
                if isinstance(key, str) and (problem := _string_problem(key, no_controls)):
                    return _spell(path), f"a key {problem}"
                stack.append(((path, key), child, depth + 1))
        elif (problem := _scalar_problem(item, no_controls)) is not None:
            return _spell(path), problem
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return "", f"must be at most {max_bytes} bytes serialized as JSON (got {size})"
    return None


def _scalar_problem(item: object, no_controls: bool) -> str | None:
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        if not INT64_MIN <= item <= INT64_MAX:
            return "integers must fit a signed 64-bit integer"
        return None
    if isinstance(item, float):
        if math.isnan(item):
            return "NaN is not a JSON number"
        if math.isinf(item):
            return "Infinity is not a JSON number"
        return None
    if isinstance(item, str):
        return _string_problem(item, no_controls)
    return f"{type(item).__name__} is not a JSON value"


def _string_problem(text: str, no_controls: bool) -> str | None:
    if no_controls:
        return text_problem(text, max_bytes=MAX_JSON_BYTES)
    if "\x00" in text:
        return "strings may not hold NUL (\\u0000)"
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "strings may not hold lone surrogates"
    return None


def nesting_problem(value: object, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """Like `json_problem`, for the depth alone: cheap enough to run before anything else."""
    stack: list[tuple[_Path, object, int]] = [(None, value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > max_depth:
                return _spell(path), f"is nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(((path, key), child, depth + 1) for key, child in pairs)
    return None


# A path inside a document as (parent path, key) links: spelt only when reported, so that
# walking a deep document with long keys costs no memory per level.
_Path = tuple[Any, object] | None


def _spell(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        text = str(key)
        parts.append(text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "...")
    return ".".join(reversed(parts))


def describe(field: str, found: tuple[str, str]) -> str:
    """One readable line for a `json_problem` result found inside `field`."""
    inner, message = found
    if len(inner) > 2 * MAX_ECHO_CHARS:
        inner = inner[:MAX_ECHO_CHARS] + "..." + inner[-MAX_ECHO_CHARS:]
    return f"{message} (at {field}.{inner})" if inner else message


__all__ = [
    "LAYOUT_CHARACTERS",
    "clip",
    "describe",
    "json_problem",
    "nesting_problem",
    "text_problem",
]
