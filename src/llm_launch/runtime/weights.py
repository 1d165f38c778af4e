"""Make an endpoint's checkpoint available on local disk before its engine starts.

Caller: the startup program (`llm_launch.runtime.startup`) calls `fetch_checkpoint` with the
endpoint's `--checkpoint-path` and `--weights-dir`, once per pod, before it launches the engine.
Next hop: the engine loads the directory it returns (SGLang `--model-path`, `vllm serve <dir>`).

Remote sources (`s3://`, `gs://`, `hf://`) are copied to `weights_dir/<destination_name(uri)>`.
The copy is staged in a sibling `<dest>.partial-<pid>-<token>`, stamped with a completion
marker, and renamed into place, so a final directory is always complete. A lock file per
destination lets one process fetch while others sharing the volume wait and then reuse its copy;
should locking be unavailable, the atomic rename still decides a winner and the loser discards its
copy. Local sources (`file://`, absolute paths) are used in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["MARKER_NAME", "WeightsError", "destination_name", "fetch_checkpoint"]

Log = Callable[[str], None]

MARKER_NAME = ".llm-launch-complete"
PROGRESS_INTERVAL_S = 30.0  # how often a running fetch reports files and bytes so far
LOCK_WAIT_LOG_S = 60.0  # how often a process waiting for another one's fetch says so
LOCK_POLL_S = 1.0
PARALLEL_DOWNLOADS = 16  # objects fetched at once by the library (not CLI) clients


class WeightsError(RuntimeError):
    """A checkpoint could not be made available. The message names the uri and the cause."""

    def __init__(self, uri: str, cause: str) -> None:
        super().__init__(f"cannot fetch checkpoint {uri}: {cause}")
        self.uri = uri
        self.cause = cause

    def __reduce__(self) -> tuple[type[WeightsError], tuple[str, str]]:
        return type(self), (self.uri, self.cause)  # survives pickling, e.g. across processes


@dataclass(frozen=True)
class Source:
    uri: str
    scheme: str  # "s3", "gs", "hf" or "file"
    root: str  # bucket, repository id or local path
    prefix: str = ""  # object prefix, without slashes at either end
    revision: str | None = None  # hf:// only

    def object_pattern(self) -> str:
        """The CLI wildcard that names every object under the prefix."""
        folder = f"{self.prefix}/" if self.prefix else ""
        return f"{self.scheme}://{self.root}/{folder}*"


Fetcher = Callable[[Source, Path], None]  # fills an empty directory with the source's files


def fetch_checkpoint(uri: str, weights_dir: Path, *, log: Log = print) -> Path:
    """Make the checkpoint at `uri` available locally; return the directory the engine loads.

    Local directories (`file:///abs/path` or `/abs/path`) are returned as they are, without a
    copy: they are volumes the cluster already mounts (a PVC, NFS, hostPath) and the engine only
    reads them, so copying would cost the checkpoint's size in disk and minutes of start-up for
    nothing. They are checked to be non-empty directories. Remote checkpoints are fetched once per
    weights directory and reused while a complete copy is there.

    Raises WeightsError, with a one-line message naming `uri` and the cause.
    """
    source = _parse_uri(uri)
    if source.scheme == "file":
        return _local_directory(source, log)
    dest = weights_dir / destination_name(uri)
    if _is_complete(dest, source.uri):
        log(f"checkpoint {uri} is already complete at {dest}; skipping the fetch")
        return dest
    tool, fetch = _choose_fetcher(source)
    try:
        weights_dir.mkdir(parents=True, exist_ok=True)
        with _destination_lock(dest, log) as locked:
            if _is_complete(dest, source.uri):
                log(f"checkpoint {uri} was fetched to {dest} by another process; reusing it")
                return dest
            if locked:
                _remove_stale_partials(dest, log)
            log(f"fetching {uri} into {dest} with {tool}")
            return _fetch_staged(source, dest, fetch, log)
    except OSError as exc:
        raise WeightsError(uri, f"local file system error: {exc}") from exc


def destination_name(uri: str) -> str:
    """A stable, filesystem-safe directory name for `uri`: readable tail plus a short hash."""
    canonical = uri.rstrip("/")
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", canonical.replace("://", "-"))
    return f"{readable[-80:].strip('.-')}-{digest}"


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


def _choose_fetcher(source: Source) -> tuple[str, Fetcher]:
    """The fastest client present for the source's scheme, as (name for the log, fetcher)."""
    if source.scheme == "s3":
        if s5cmd := shutil.which("s5cmd"):
            return "s5cmd", _tool_fetcher(functools.partial(_s5cmd_argv, s5cmd))
        return "boto3", _s3_library_fetch
    if source.scheme == "gs":
        if gcloud := shutil.which("gcloud"):
            return "gcloud storage", _tool_fetcher(functools.partial(_gcloud_argv, gcloud))
        if gsutil := shutil.which("gsutil"):
            return "gsutil", _tool_fetcher(functools.partial(_gsutil_argv, gsutil))
        if (storage := _optional_module("google.cloud.storage")) is not None:
            return "google-cloud-storage", functools.partial(_gcs_library_fetch, storage)
        raise WeightsError(
            source.uri,
            "no Google Cloud Storage client: install the gcloud CLI or gsutil, "
            "or pip install google-cloud-storage",
        )
    if (hub := _optional_module("huggingface_hub")) is not None:
        return "huggingface_hub", functools.partial(_hf_fetch, hub)
    raise WeightsError(source.uri, "huggingface_hub is not installed: pip install huggingface_hub")


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- staging, locking, completion -----------------------------------------------------------


def _fetch_staged(source: Source, dest: Path, fetch: Fetcher, log: Log) -> Path:
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    partial.mkdir()
    started = time.monotonic()
    try:
        with _progress_reports(source.uri, partial, started, log):
            fetch(source, partial)
        files, size = _tally(partial)
        if files == 0:
            raise WeightsError(source.uri, "the source holds no files")
        _write_marker(partial, source.uri, files, size)
        _publish(partial, dest, source.uri, log)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # nothing left there after a publish
    elapsed = time.monotonic() - started
    log(f"fetched {source.uri} to {dest}: {files} files, {_human(size)} in {elapsed:.1f}s")
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
def _progress_reports(uri: str, directory: Path, started: float, log: Log) -> Iterator[None]:
    """Log files and bytes present in `directory` every PROGRESS_INTERVAL_S while the body runs.

    Counting what has landed on disk works the same for every client, CLI or library.
    """
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(PROGRESS_INTERVAL_S):
            files, size = _tally(directory)
            elapsed = max(time.monotonic() - started, 1e-3)
            log(
                f"fetching {uri}: {files} files, {_human(size)} so far after {elapsed:.0f}s "
                f"({_human(size / elapsed)}/s)"
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


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# --- command-line clients -------------------------------------------------------------------


def _tool_fetcher(argv: Callable[[Source, Path], list[str]]) -> Fetcher:
    return lambda source, target: _run_tool(source, argv(source, target))


def _s5cmd_argv(s5cmd: str, source: Source, target: Path) -> list[str]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    endpoint_args = ["--endpoint-url", endpoint] if endpoint else []
    return [s5cmd, *endpoint_args, "--log", "error", "cp", source.object_pattern(), f"{target}/"]


def _gcloud_argv(gcloud: str, source: Source, target: Path) -> list[str]:
    return [gcloud, "storage", "cp", "--recursive", source.object_pattern(), f"{target}/"]


def _gsutil_argv(gsutil: str, source: Source, target: Path) -> list[str]:
    return [gsutil, "-m", "cp", "-r", source.object_pattern(), f"{target}/"]


_TOOL_FAILURE_CAUSES = {
    "bucket not found": re.compile(r"NoSuchBucket|bucket does not exist|BucketNotFound", re.I),
    "access denied": re.compile(r"AccessDenied|Forbidden|\b403\b|permission", re.I),
    "no objects found": re.compile(
        r"no object found|No URLs matched|matched no objects|NoSuchKey|\b404\b", re.I
    ),
}


def _run_tool(source: Source, argv: list[str]) -> None:
    """Run a copy command; on failure raise WeightsError with the cause its output names."""
    tool = Path(argv[0]).name
    with tempfile.TemporaryFile() as output:  # a file, not a pipe: the tool can never block
        try:
            completed = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        except OSError as exc:
            raise WeightsError(source.uri, f"cannot run {tool}: {exc.strerror}") from exc
        if completed.returncode == 0:
            return
        output.seek(max(0, output.seek(0, os.SEEK_END) - 4096))
        tail = output.read().decode(errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    detail = lines[-1][:300] if lines else "no output"
    cause = next(
        (c for c, pattern in _TOOL_FAILURE_CAUSES.items() if pattern.search(tail)), "failed"
    )
    raise WeightsError(
        source.uri, f"{cause} ({tool} exited with status {completed.returncode}: {detail})"
    )


# --- library clients ------------------------------------------------------------------------


def _relative_object_path(source: Source, key: str) -> PurePosixPath:
    """Where object `key` goes under the destination; refuse keys that would escape it."""
    relative = PurePosixPath(key[len(source.prefix) :].lstrip("/"))
    if not relative.parts or any(part in ("..", ".") for part in relative.parts):
        raise WeightsError(source.uri, f"object key {key!r} does not map to a file path")
    return relative


def _download_all(
    source: Source, target: Path, keys: list[str], download: Callable[[str, Path], None]
) -> None:
    """Call `download(key, path)` for every key, PARALLEL_DOWNLOADS at a time; stop at an error."""
    jobs = [(key, target / _relative_object_path(source, key)) for key in keys]
    for directory in {path.parent for _, path in jobs}:
        directory.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="weights-download")
    try:
        for future in as_completed([pool.submit(download, key, path) for key, path in jobs]):
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _s3_library_fetch(source: Source, target: Path) -> None:
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    boto3_errors: Any = importlib.import_module("boto3.exceptions")
    try:
        # A fresh session reads the environment now, not when boto3 was first used. Each
        # download_file runs up to 10 range requests at once: the pool has room for all.
        config = Config(max_pool_connections=PARALLEL_DOWNLOADS * 10)
        client = boto3.session.Session().client("s3", config=config)
        objects = _list_s3_objects(client, source)
        if not objects:
            raise WeightsError(source.uri, f"no objects under prefix {source.prefix!r}")
        _check_free_space(source, target, sum(objects.values()))
        _download_all(
            source,
            target,
            sorted(objects),
            lambda key, path: _download_s3_object(client, source.root, key, path),
        )
    except botocore.exceptions.ClientError as exc:
        raise WeightsError(source.uri, _s3_error_cause(source, exc.response)) from exc
    except (botocore.exceptions.BotoCoreError, boto3_errors.Boto3Error) as exc:
        raise WeightsError(source.uri, _botocore_cause(exc)) from exc


def _list_s3_objects(client: Any, source: Source) -> dict[str, int]:
    """Object keys under the prefix (as a directory) with their sizes; folder markers skipped."""
    prefix = f"{source.prefix}/" if source.prefix else ""
    objects: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=source.root, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                objects[item["Key"]] = int(item["Size"])
    return objects


def _download_s3_object(client: Any, bucket: str, key: str, path: Path) -> None:
    client.download_file(bucket, key, str(path))


def _check_free_space(source: Source, target: Path, needed: int) -> None:
    free = shutil.disk_usage(target).free
    if needed > free:
        raise WeightsError(
            source.uri, f"needs {_human(needed)} but only {_human(free)} is free in {target.parent}"
        )


_S3_ERROR_CAUSES = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "AccessDenied": "access denied to bucket {bucket!r}",
    "403": "access denied to bucket {bucket!r}",
    "AllAccessDisabled": "access denied to bucket {bucket!r}",
    "NoSuchKey": "an object was not found (deleted during the copy?)",
    "404": "an object was not found (deleted during the copy?)",
    "InvalidAccessKeyId": "the AWS access key id is not valid",
    "SignatureDoesNotMatch": "the AWS secret access key is wrong",
    "ExpiredToken": "the AWS credentials have expired",
}


def _s3_error_cause(source: Source, response: dict[str, Any]) -> str:
    error = response.get("Error", {})
    code = str(error.get("Code", "unknown"))
    cause = _S3_ERROR_CAUSES.get(code)
    if cause is None:
        return f"S3 error {code}: {error.get('Message', 'no message')}"
    return f"{cause.format(bucket=source.root)} ({code})"


def _botocore_cause(exc: Exception) -> str:
    if type(exc).__name__ == "NoCredentialsError":
        return (
            "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or give the pod an IAM role)"
        )
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _gcs_library_fetch(storage: Any, source: Source, target: Path) -> None:
    prefix = f"{source.prefix}/" if source.prefix else ""
    # google.api_core and google.auth errors share no base class we can import without the
    # library, so any exception from the client is translated here, by its class name.
    try:
        client = storage.Client()
        blobs = {
            blob.name: blob
            for blob in client.list_blobs(source.root, prefix=prefix)
            if not blob.name.endswith("/")
        }
        if not blobs:
            raise WeightsError(source.uri, f"no objects under prefix {source.prefix!r}")
        _download_all(
            source,
            target,
            sorted(blobs),
            lambda key, path: blobs[key].download_to_filename(str(path)),
        )
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(source.uri, _named_cause(exc, _GCS_ERROR_CAUSES)) from exc


def _hf_fetch(hub: Any, source: Source, target: Path) -> None:
    try:
        hub.snapshot_download(repo_id=source.root, revision=source.revision, local_dir=str(target))
    except Exception as exc:  # huggingface_hub's error tree; translated by class name
        raise WeightsError(source.uri, _named_cause(exc, _HF_ERROR_CAUSES)) from exc


_GCS_ERROR_CAUSES = {
    "NotFound": "bucket not found",
    "Forbidden": "access denied",
    "Unauthorized": "access denied",
    "DefaultCredentialsError": "no Google Cloud credentials found",
}
_HF_ERROR_CAUSES = {  # GatedRepoError subclasses RepositoryNotFoundError: the MRO decides
    "GatedRepoError": "gated repository: accept its terms on the Hub and set HF_TOKEN",
    "RevisionNotFoundError": "revision not found",
    "RepositoryNotFoundError": "repository not found (or private: set HF_TOKEN)",
    "LocalEntryNotFoundError": "cannot reach the Hugging Face Hub",
}


def _named_cause(exc: Exception, causes: dict[str, str]) -> str:
    """The cause registered for the nearest class of `exc`, plus the first line of its message."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for cls in type(exc).__mro__:
        if cls.__name__ in causes:
            return f"{causes[cls.__name__]} ({message})"
    return message
