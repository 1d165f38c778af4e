"""Make an endpoint's checkpoint available on local disk before its engine starts.

Caller: the startup program (`llm_launch.runtime.startup`) calls `fetch_checkpoint` with the
endpoint's `--checkpoint-path` and `--weights-dir`, once per pod, before it launches the engine.
Next hop: the engine loads the directory it returns (SGLang `--model-path`, `vllm serve <dir>`).

Remote sources (`s3://`, `gs://`, `hf://`) are copied to `weights_dir/<destination_name(uri)>`.
The copy is staged in a sibling `<dest>.partial-<pid>-<token>`, stamped with a completion
marker, and renamed into place, so a final directory is always complete. A lock file per
destination lets one process fetch while others sharing the volume wait and then reuse its copy;
should locking be unavailable, the atomic rename still decides a winner and the loser discards its
copy. Local sources (`file://`, absolute paths) are used in place; given checkpoint roots
(LLM_LAUNCH_CHECKPOINT_ROOTS, set by the server), one whose real path, links resolved, is not
under a root is refused before anything about it is looked at or said.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from llm_launch.domain.checkpoints import is_under
from llm_launch.domain.weights_cache import cache_directory_name
from llm_launch.runtime.startup.weights_clients import (
    Fetcher,
    Source,
    Transfer,
    WeightsError,
    choose_fetcher,
    human_size,
)

__all__ = ["MARKER_NAME", "Progress", "WeightsError", "destination_name", "fetch_checkpoint"]

Log = Callable[[str], None]
# Called about every PROGRESS_POLL_S while a copy runs, and once when it is complete, with
# the bytes on disk so far and the total (None where the client does not list the source).
Progress = Callable[[int, int | None], None]

MARKER_NAME = ".llm-launch-complete"
PROGRESS_INTERVAL_S = 30.0  # how often a running fetch logs files and bytes so far
PROGRESS_POLL_S = 1.0  # how often it counts them for the progress callback
LOCK_WAIT_LOG_S = 60.0  # how often a process waiting for another one's fetch says so
LOCK_POLL_S = 1.0


def fetch_checkpoint(
    uri: str,
    weights_dir: Path,
    *,
    log: Log = print,
    checkpoint_roots: Sequence[PurePosixPath] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Make the checkpoint at `uri` available locally; return the directory the engine loads.

    Local directories (`file:///abs/path` or `/abs/path`) are returned as they are, without a
    copy: they are volumes the cluster already mounts (a PVC, NFS, hostPath) and the engine only
    reads them, so copying would cost the checkpoint's size in disk and minutes of start-up for
    nothing. They are checked to be non-empty directories. With `checkpoint_roots` (None: no
    check), a local directory is used only if its real path is under one of them; the engine
    then gets that real path, so a link swapped afterwards cannot redirect it. Remote
    checkpoints are fetched once per weights directory and reused while a complete copy is there;
    while one is copied, `progress` (if given) hears how far it got.

    Raises WeightsError, with a one-line message naming `uri` and the cause.
    """
    source = _parse_uri(uri)
    if source.scheme == "file":
        if checkpoint_roots is not None:
            source = _inside_roots(source, checkpoint_roots)
        return _local_directory(source, log)
    dest = weights_dir / destination_name(uri)
    if _is_complete(dest, source.uri):
        log(f"checkpoint {uri} is already complete at {dest}; skipping the fetch")
        return dest
    tool, fetch = choose_fetcher(source)
    try:
        weights_dir.mkdir(parents=True, exist_ok=True)
        with _destination_lock(dest, log) as locked:
            if _is_complete(dest, source.uri):
                log(f"checkpoint {uri} was fetched to {dest} by another process; reusing it")
                return dest
            if locked:
                _remove_stale_partials(dest, log)
            log(f"fetching {uri} into {dest} with {tool}")
            return _fetch_staged(source, dest, fetch, log, progress)
    except OSError as exc:
        raise WeightsError(uri, f"local file system error: {exc}") from exc


def destination_name(uri: str) -> str:
    """The directory name of `uri`'s copy: the one the Kubernetes rendering also gives it in
    a shared weights cache (`domain/weights_cache.py`)."""
    return cache_directory_name(uri)


# --- sources ------------------------------------------------------------------------------


def _parse_uri(uri: str) -> Source:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        if uri.startswith("/"):
            return Source(uri, "file", uri)
        raise WeightsError(uri, "use s3://, gs://, hf://, file:// or an absolute path")
    if scheme == "file":
        if not rest.startswith("/"):
            raise WeightsError(uri, "file:// must name an absolute path, as in file:///models/x")
        return Source(uri, "file", rest)
    if scheme in ("s3", "gs"):
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise WeightsError(uri, "names no bucket")
        return Source(uri.rstrip("/"), scheme, bucket, prefix.strip("/"))
    if scheme == "hf":
        repo, at, revision = rest.partition("@")
        repo = repo.strip("/")
        if not repo or repo.count("/") > 1 or (at and not revision):
            raise WeightsError(uri, "use hf://<org>/<repo> or hf://<org>/<repo>@<revision>")
        return Source(uri.rstrip("/"), "hf", repo, revision=revision or None)
    raise WeightsError(uri, f"unsupported scheme {scheme}://")


def _inside_roots(source: Source, roots: Sequence[PurePosixPath]) -> Source:
    """`source` at its real path, or WeightsError if that is not under a root.

    The message is the same whatever lies at the path (missing, a file, a link to elsewhere),
    so a refused path tells nothing about the host outside the roots.
    """
    real_roots = [PurePosixPath(os.path.realpath(root)) for root in roots]
    real = PurePosixPath(os.path.realpath(source.root))
    if not is_under(real, real_roots):
        raise WeightsError(
            source.uri, "it is not under the checkpoint roots (LLM_LAUNCH_CHECKPOINT_ROOTS)"
        )
    return Source(source.uri, "file", str(real))


def _local_directory(source: Source, log: Log) -> Path:
    path = Path(source.root)
    if not path.exists():
        raise WeightsError(source.uri, f"{path} does not exist")
    if not path.is_dir():
        raise WeightsError(source.uri, f"{path} is not a directory")
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        raise WeightsError(source.uri, f"cannot read {path}: {exc.strerror}") from exc
    if empty:
        raise WeightsError(source.uri, f"{path} is an empty directory")
    log(f"using local checkpoint {path} in place (no copy)")
    return path


# --- staging, locking, completion -----------------------------------------------------------


def _fetch_staged(
    source: Source, dest: Path, fetch: Fetcher, log: Log, progress: Progress | None
) -> Path:
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    partial.mkdir()
    started = time.monotonic()
    transfer = Transfer()
    try:
        with _progress_reports(source.uri, partial, started, log, transfer, progress):
            fetch(source, partial, transfer)
        files, size = _tally(partial)
        if files == 0:
            raise WeightsError(source.uri, "the source holds no files")
        if progress is not None:
            progress(size, transfer.total_bytes or size)
        _write_marker(partial, source.uri, files, size)
        _publish(partial, dest, source.uri, log)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # nothing left there after a publish
    elapsed = time.monotonic() - started
    log(f"fetched {source.uri} to {dest}: {files} files, {human_size(size)} in {elapsed:.1f}s")
    return dest


def _publish(partial: Path, dest: Path, uri: str, log: Log) -> None:
    """Rename the finished copy into place; if a racer got there first, keep theirs."""
    try:
        partial.rename(dest)
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if _is_complete(dest, uri):
        log(f"another process completed {dest} first; discarding this copy")
        return
    log(f"replacing {dest}, which has no completion marker")
    shutil.rmtree(dest)
    partial.rename(dest)


def _is_complete(dest: Path, uri: str) -> bool:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("uri") == uri


def _write_marker(directory: Path, uri: str, files: int, size: int) -> None:
    record = {"uri": uri, "files": files, "bytes": size, "completed_at": time.time()}
    (directory / MARKER_NAME).write_text(json.dumps(record) + "\n")


@contextlib.contextmanager
def _destination_lock(dest: Path, log: Log) -> Iterator[bool]:
    """Hold `<dest>.lock` exclusively; yield False where the file system has no locks.

    flock is released by the kernel when its holder dies, so a crashed fetch never blocks the
    next one, and holding it proves every other partial copy of `dest` is abandoned.
    """
    lock_path = dest.with_name(f"{dest.name}.lock")
    with open(lock_path, "a+b") as handle:  # closing it releases the lock
        yield _wait_for_lock(handle.fileno(), lock_path, log)


def _wait_for_lock(fd: int, lock_path: Path, log: Log) -> bool:
    waiting_since = next_note = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without locks
            log(f"cannot lock {lock_path} ({exc.strerror}); fetching without a lock")
            return False
        if time.monotonic() >= next_note:
            waited = time.monotonic() - waiting_since
            log(f"waiting for another process that holds {lock_path} ({waited:.0f}s)")
            next_note += LOCK_WAIT_LOG_S
        time.sleep(LOCK_POLL_S)


def _remove_stale_partials(dest: Path, log: Log) -> None:
    """Delete partial copies left by crashed attempts; only call while holding the lock."""
    for stale in dest.parent.glob(f"{glob.escape(dest.name)}.partial-*"):
        log(f"removing {stale}, left by an earlier attempt that did not finish")
        shutil.rmtree(stale, ignore_errors=True)


# --- progress -------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_reports(
    uri: str,
    directory: Path,
    started: float,
    log: Log,
    transfer: Transfer,
    progress: Progress | None,
) -> Iterator[None]:
    """While the body runs, count the files and bytes present in `directory`: log them every
    PROGRESS_INTERVAL_S, and give the bytes to `progress` every PROGRESS_POLL_S.

    Counting what has landed on disk works the same for every client, CLI or library.
    """
    stop = threading.Event()
    poll_s = min(PROGRESS_POLL_S, PROGRESS_INTERVAL_S) if progress else PROGRESS_INTERVAL_S

    def report() -> None:
        next_log = started + PROGRESS_INTERVAL_S
        while not stop.wait(poll_s):
            files, size = _tally(directory)
            if progress is not None:
                progress(size, transfer.total_bytes)
            now = time.monotonic()
            if now >= next_log:
                next_log = now + PROGRESS_INTERVAL_S
                elapsed = max(now - started, 1e-3)
                log(
                    f"fetching {uri}: {files} files, {human_size(size)} so far after "
                    f"{elapsed:.0f}s ({human_size(size / elapsed)}/s)"
                )

    thread = threading.Thread(target=report, name="weights-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _tally(directory: Path) -> tuple[int, int]:
    """Files and bytes under `directory`, skipping files that vanish while it counts."""
    files = size = 0
    for root, _, names in os.walk(directory):
        for name in names:
            if name == MARKER_NAME:
                continue
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
                files += 1
    return files, size
