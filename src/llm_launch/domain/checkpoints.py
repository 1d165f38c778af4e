"""Checkpoint roots: the directories local checkpoints (`file://`, absolute paths) may be under.

Called by the endpoint service (`services/endpoints.py`) on every create and update, with
the roots of `serve --checkpoint-roots` (LLM_LAUNCH_CHECKPOINT_ROOTS), and by the in-pod
fetch (`runtime/startup/weights.py`) on the resolved path. The check here looks only at the text:
it never touches the file system, because a check that stats a path is itself a probe of
the host, and its messages depend on nothing but the request and the configured roots.

Paths are compared by components after normalization: `/models2` is not under `/models`,
and a path with `..` segments is refused rather than resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from llm_launch.domain.errors import FieldError

__all__ = [
    "ROOTS_SETTING",
    "checkpoint_root_problem",
    "is_under",
    "local_checkpoint_path",
    "normalize_path",
    "parse_checkpoint_roots",
]

ROOTS_SETTING = "--checkpoint-roots (LLM_LAUNCH_CHECKPOINT_ROOTS)"
FILE_SCHEME = "file://"


def local_checkpoint_path(checkpoint_path: str) -> str | None:
    """The local path a checkpoint names (`file:///x` or `/x`), or None for a remote one."""
    if checkpoint_path.startswith(FILE_SCHEME):
        return checkpoint_path[len(FILE_SCHEME) :]
    if "://" not in checkpoint_path:
        return checkpoint_path
    return None


def normalize_path(path: str) -> PurePosixPath | str:
    """The absolute path with `//` and `.` removed, or why it cannot be used (a string).

    `..` is refused outright: whether `/a/b/..` is `/a` depends on whether `b` is a link,
    which only the file system knows.
    """
    if not path.startswith("/"):
        return "must be an absolute path (file:// takes one too, as in file:///models/x)"
    if "\x00" in path:
        return "contains a NUL character"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "may not contain '..' segments"
    return PurePosixPath("/", *parts)


def is_under(path: PurePosixPath, roots: Iterable[PurePosixPath]) -> bool:
    """True if `path` is one of `roots` or inside one, comparing whole components."""
    return any(path.parts[: len(root.parts)] == root.parts for root in roots)


def parse_checkpoint_roots(value: str | Iterable[str]) -> tuple[PurePosixPath, ...]:
    """The roots of a comma-separated setting (or a list); ValueError naming a bad one."""
    items = value.split(",") if isinstance(value, str) else list(value)
    roots = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        normalized = normalize_path(item)
        if isinstance(normalized, str):
            raise ValueError(f"checkpoint root {item!r} {normalized}")
        if normalized == PurePosixPath("/"):
            raise ValueError("checkpoint root '/' would allow every path on the host")
        roots.append(normalized)
    return tuple(roots)


def checkpoint_root_problem(
    checkpoint_path: str | None, roots: Sequence[PurePosixPath]
) -> FieldError | None:
    """Why a spec's `checkpoint_path` may not be used here, or None (also for remote ones)."""
    local = None if checkpoint_path is None else local_checkpoint_path(checkpoint_path)
    if local is None:
        return None
    field = "checkpoint_path"
    normalized = normalize_path(local)
    if isinstance(normalized, str):
        return FieldError(field, f"the local path {normalized}")
    if not roots:
        return FieldError(
            field,
            "local checkpoint paths are disabled on this server (no checkpoint roots are "
            f"configured; an administrator sets {ROOTS_SETTING}); use s3://, gs:// or hf://",
        )
    if not is_under(normalized, roots):
        allowed = ", ".join(str(root) for root in roots)
        return FieldError(
            field,
            f"a local checkpoint must be under a checkpoint root ({allowed}); "
            f"roots are set with {ROOTS_SETTING}",
        )
    return None
