"""The clients that copy a checkpoint: s5cmd, gcloud/gsutil, boto3, google-cloud-storage and
huggingface_hub, chosen by what is installed; and the errors they fail with.

Caller: `runtime/startup/weights.py` (`fetch_checkpoint`), which stages, locks and publishes what a
fetcher writes. Next hop: the storage service behind the uri.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

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


@dataclass
class Transfer:
    """What a fetcher learns about its copy while it runs, for the progress reports."""

    total_bytes: int | None = None  # set by the clients that list the source first


# Fills an empty directory with the source's files; sets the Transfer's total when it can.
Fetcher = Callable[[Source, Path, Transfer], None]


def choose_fetcher(source: Source) -> tuple[str, Fetcher]:
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


# --- command-line clients -------------------------------------------------------------------


def _tool_fetcher(argv: Callable[[Source, Path], list[str]]) -> Fetcher:
    return lambda source, target, _transfer: _run_tool(source, argv(source, target))


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


def _s3_library_fetch(source: Source, target: Path, transfer: Transfer) -> None:
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
        transfer.total_bytes = sum(objects.values())
        _check_free_space(source, target, transfer.total_bytes)
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
            source.uri,
            f"needs {human_size(needed)} but only {human_size(free)} is free in {target.parent}",
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


def _gcs_library_fetch(storage: Any, source: Source, target: Path, transfer: Transfer) -> None:
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
        transfer.total_bytes = sum(int(getattr(blob, "size", 0) or 0) for blob in blobs.values())
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


def _hf_fetch(hub: Any, source: Source, target: Path, _transfer: Transfer) -> None:
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


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
