"""Fetching checkpoints from S3 with boto3, against a moto S3 server on a loopback port.

The client is the real one, configured only through the environment (AWS_ENDPOINT_URL), as in
a pod; s5cmd is kept off PATH so the library path is the one exercised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from llm_launch.runtime.startup import weights as weights_module
from llm_launch.runtime.startup import weights_clients as weights
from llm_launch.runtime.startup.weights import (
    MARKER_NAME,
    WeightsError,
    destination_name,
    fetch_checkpoint,
)
from tests.support.weights import Lines, read_tree

BUCKET = "checkpoints"
PREFIX = "hf-synced-weights/deepseek-ai/DeepSeek-R1"
URI = f"s3://{BUCKET}/{PREFIX}"
CHECKPOINT = {
    "config.json": b'{"model_type": "deepseek_v3"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model-00001-of-00003.safetensors": bytes(range(256)) * 40,
    "model-00002-of-00003.safetensors": bytes(range(255, -1, -1)) * 40,
    "model-00003-of-00003.safetensors": b"\x07" * 6000,
    "extras/mtp/layer.safetensors": b"\x01" * 3000,
    "extras/mtp/deeper/notes.txt": b"nested twice",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client for a fresh bucket holding CHECKPOINT under PREFIX, plus decoys beside it."""
    aws_env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": str(tmp_path / "empty-bin"),  # no s5cmd
    }
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    for name, data in CHECKPOINT.items():
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=data)
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/", Body=b"")  # a console "folder"
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}-Zero/config.json", Body=b"a sibling")
    client.put_object(Bucket=BUCKET, Key="other/config.json", Body=b"elsewhere")
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def leftovers(weights_dir: Path) -> list[str]:
    return sorted(p.name for p in weights_dir.iterdir() if not p.name.endswith(".lock"))


def test_the_fetched_copy_equals_the_source_prefix(s3: Any, weights_dir: Path) -> None:
    log = Lines()

    dest = fetch_checkpoint(URI, weights_dir, log=log)

    assert dest == weights_dir / destination_name(URI)
    assert read_tree(dest) == CHECKPOINT  # no folder marker, no sibling prefix, no other prefix
    marker = json.loads((dest / MARKER_NAME).read_text())
    assert marker["uri"] == URI
    assert marker["files"] == len(CHECKPOINT)
    assert marker["bytes"] == sum(len(data) for data in CHECKPOINT.values())
    assert log.matching("with boto3") and log.matching(f"{len(CHECKPOINT)} files")
    assert len(log.lines) <= 3
    assert leftovers(weights_dir) == [dest.name]


def test_progress_knows_the_total_from_the_listing_while_it_copies(
    s3: Any, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights_module, "PROGRESS_POLL_S", 0.02)
    monkeypatch.setattr(weights, "PARALLEL_DOWNLOADS", 1)  # one object at a time, slowly
    download = weights._download_s3_object

    def slow_download(client: Any, bucket: str, key: str, path: Path) -> None:
        download(client, bucket, key, path)
        time.sleep(0.1)

    monkeypatch.setattr(weights, "_download_s3_object", slow_download)
    heard: list[tuple[int, int | None]] = []

    fetch_checkpoint(URI, weights_dir, log=Lines(), progress=lambda *a: heard.append(a))

    size = sum(len(data) for data in CHECKPOINT.values())
    assert {total for _, total in heard if total is not None} == {size}  # from the listing
    assert any(0 < done < size and total == size for done, total in heard)  # during the copy
    assert heard[-1] == (size, size)


def test_a_second_fetch_is_skipped(s3: Any, weights_dir: Path) -> None:
    dest = fetch_checkpoint(URI, weights_dir, log=Lines())
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/config.json")  # a refetch would notice
    log = Lines()
    assert fetch_checkpoint(URI + "/", weights_dir, log=log) == dest
    assert log.matching("skipping the fetch")
    assert read_tree(dest) == CHECKPOINT


def test_a_stale_partial_copy_is_replaced(s3: Any, weights_dir: Path) -> None:
    stale = weights_dir / f"{destination_name(URI)}.partial-7-0badc0de"
    (stale / "extras").mkdir(parents=True)
    (stale / "config.json").write_bytes(b"half written")
    (stale / "extras" / "junk.bin").write_bytes(b"junk")

    dest = fetch_checkpoint(URI, weights_dir, log=Lines())

    assert read_tree(dest) == CHECKPOINT
    assert not stale.exists()
    assert leftovers(weights_dir) == [dest.name]


def test_a_missing_bucket_names_the_uri_and_the_cause(s3: Any, weights_dir: Path) -> None:
    uri = "s3://no-such-bucket/models/llama"
    with pytest.raises(WeightsError) as caught:
        fetch_checkpoint(uri, weights_dir, log=Lines())
    assert str(caught.value) == (
        f"cannot fetch checkpoint {uri}: bucket 'no-such-bucket' does not exist (NoSuchBucket)"
    )
    assert leftovers(weights_dir) == []


def test_a_missing_prefix_names_the_uri_and_the_cause(s3: Any, weights_dir: Path) -> None:
    # Keys start with this string, but it is not a folder: a prefix is a directory.
    uri = f"s3://{BUCKET}/hf-synced-weights/deepseek"
    with pytest.raises(WeightsError, match=f"{uri}: no objects under prefix"):
        fetch_checkpoint(uri, weights_dir, log=Lines())
    assert leftovers(weights_dir) == []


def test_a_failure_mid_copy_publishes_nothing(
    s3: Any, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object deleted between the listing and its download: a real 404 from S3."""
    monkeypatch.setattr(weights, "PARALLEL_DOWNLOADS", 1)  # downloads go in key order
    real_download = weights._download_s3_object
    downloaded: list[str] = []

    def delete_the_last_object_first(client: Any, bucket: str, key: str, path: Path) -> None:
        if not downloaded:
            s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/tokenizer.json")
        real_download(client, bucket, key, path)
        downloaded.append(key)

    monkeypatch.setattr(weights, "_download_s3_object", delete_the_last_object_first)

    with pytest.raises(WeightsError, match=f"{URI}: an object was not found") as caught:
        fetch_checkpoint(URI, weights_dir, log=Lines())

    assert "\n" not in str(caught.value)
    assert len(downloaded) >= 2  # it failed mid-copy, not before it began
    assert leftovers(weights_dir) == []  # no final directory, no partial copy
    assert not list(weights_dir.rglob(MARKER_NAME))


def test_missing_credentials_are_named(
    s3: Any, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(WeightsError, match=f"{URI}: no AWS credentials found"):
        fetch_checkpoint(URI, weights_dir, log=Lines())


def test_an_unreachable_endpoint_is_named(
    s3: Any, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(WeightsError, match=f"{URI}: Could not connect to the endpoint URL"):
        fetch_checkpoint(URI, weights_dir, log=Lines())
