"""A weights cache shared by the pods of a node (hostPath) or of a cluster (a ReadWriteMany
claim), as the startup program uses it: real `llm-launch-startup` processes, one per "pod",
fetch from an S3 server into the directory the Kubernetes rendering mounts for their
checkpoint (`<cache root>/<cache_directory_name(uri)>`), then exec an engine that records
the model path it was given.

The S3 server is moto's, behind a WSGI wrapper that counts every object download and can
hold a download until the test releases it, so a test can have one pod mid-download while
another starts, or kill a pod mid-download. Processes and the server meet only through the
file system and HTTP, as pods sharing a hostPath directory do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from llm_launch.domain.weights_cache import cache_directory_name
from llm_launch.runtime.startup.program import chat_template_file
from llm_launch.runtime.startup.weights import MARKER_NAME
from tests.support.weights import read_tree

BUCKET = "checkpoints"
URI = f"s3://{BUCKET}/hf-synced-weights/deepseek-ai/DeepSeek-R1"
OTHER_URI = f"s3://{BUCKET}/hf-synced-weights/deepseek-ai/DeepSeek-V3"
CHECKPOINT = {
    "config.json": b'{"model_type": "deepseek_v3"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model-00001-of-00003.safetensors": bytes(range(256)) * 40,
    "model-00002-of-00003.safetensors": bytes(range(255, -1, -1)) * 40,
    "model-00003-of-00003.safetensors": b"\x07" * 6000,
}
OTHER_CHECKPOINT = {
    "config.json": b'{"model_type": "deepseek_v3", "variant": "v3"}',
    "model-00001-of-00001.safetensors": b"\x03" * 5000,
}
HELD_FILE = "model-00003-of-00003.safetensors"
DEADLINE_S = 30.0  # generous: every wait below polls for a condition until this

FAKE_ENGINE = """\
import json, sys
with open(sys.argv[1], "w") as record:
    json.dump(sys.argv[2:], record)
"""


@dataclass
class CountingS3:
    """Counts object downloads (GET of a key) by uri, and holds the first `hold` GETs of
    `HELD_FILE` until `release` is set."""

    app: Any
    downloads: Counter[str] = field(default_factory=Counter)
    hold: int = 0
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        is_object = environ["REQUEST_METHOD"] == "GET" and "list-type" not in environ.get(
            "QUERY_STRING", ""
        )
        if is_object and path.startswith(f"/{BUCKET}/") and not path.endswith("/"):
            with self.lock:
                self.downloads[f"s3:/{path}"] += 1
                held = path.endswith(HELD_FILE) and self.hold > 0
                self.hold -= held
            if held:
                self.holding.set()
                self.release.wait(DEADLINE_S)
        return self.app(environ, start_response)

    def count(self, uri: str, name: str) -> int:
        return self.downloads[f"{uri}/{name}"]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[tuple[str, CountingS3]]:
    counting = CountingS3(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, counting, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", counting
    finally:
        counting.release.set()
        server.shutdown()
        thread.join()


@pytest.fixture
def s3(s3_server: tuple[str, CountingS3], tmp_path: Path) -> Iterator[CountingS3]:
    """A bucket holding both checkpoints; counts and holds reset for each test."""
    endpoint, counting = s3_server
    counting.downloads.clear()
    counting.hold = 0
    counting.holding.clear()
    counting.release.clear()
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    for uri, files in ((URI, CHECKPOINT), (OTHER_URI, OTHER_CHECKPOINT)):
        prefix = uri.removeprefix(f"s3://{BUCKET}/")
        for name, data in files.items():
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)
    counting.downloads.clear()
    yield counting
    counting.release.set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@dataclass
class Pod:
    """One startup program, as one pod of a group runs it."""

    process: subprocess.Popen[bytes]
    log: Path
    record: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def model_path(self) -> Path:
        """The path the engine was started with, once the program has finished."""
        assert self.process.wait(timeout=DEADLINE_S) == 0, self.output()
        argv = json.loads(self.record.read_text())
        return Path(argv[argv.index("--model-path") + 1])

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=DEADLINE_S)


@dataclass
class Node:
    """A node's cache root (the hostPath setting's directory) and the pods started on it."""

    root: Path
    s3_endpoint: str
    workdir: Path
    pods: list[Pod] = field(default_factory=list)

    def weights_dir(self, uri: str) -> Path:
        """What the rendered hostPath volume mounts at the pod's weights directory."""
        return self.root / cache_directory_name(uri)

    def start_pod(self, uri: str, weights_dir: Path | None = None) -> Pod:
        index = len(self.pods)
        engine = self.workdir / "fake_engine.py"
        engine.write_text(FAKE_ENGINE)
        record, log = self.workdir / f"engine-{index}.json", self.workdir / f"pod-{index}.log"
        argv = [
            sys.executable, "-m", "llm_launch.runtime.startup", "sglang",
            "--tp-size", "1", "--model", "deepseek-r1", f"--checkpoint-path={uri}",
            "--weights-dir", str(weights_dir or self.weights_dir(uri)),
            "--engine-program", f"{sys.executable} {engine} {record}",
        ]  # fmt: skip
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                stdout=sink,
                stderr=sink,
                env=self._env(),
                start_new_session=True,  # a failed test, or a kill, ends all it started
            )
        pod = Pod(process, log, record)
        self.pods.append(pod)
        return pod

    def _env(self) -> dict[str, str]:
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "LWS_", "LLM_LAUNCH_", "POD_"))
        }
        return {
            **clean,
            "POD_IP": "127.0.0.1",
            "PATH": str(self.workdir / "empty-bin"),  # no s5cmd: boto3 fetches
            "PYTHONUNBUFFERED": "1",
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@pytest.fixture
def node(s3_server: tuple[str, CountingS3], s3: CountingS3, tmp_path: Path) -> Iterator[Node]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = Node(tmp_path / "var-cache-llm-launch", s3_server[0], workdir)
    yield result
    for pod in result.pods:
        if pod.process.poll() is None:
            pod.kill()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def leftovers(directory: Path) -> list[str]:
    """Entries besides lock files and chat templates: copies, partial copies."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def download_counts(s3: CountingS3, uri: str, files: dict[str, bytes]) -> dict[str, int]:
    return {name: s3.count(uri, name) for name in files}


def test_two_pods_on_one_node_download_a_checkpoint_once(node: Node, s3: CountingS3) -> None:
    s3.hold = 1
    first = node.start_pod(URI)
    wait_for(s3.holding.is_set, "the first pod to be mid-download")
    second = node.start_pod(URI)
    wait_for(lambda: "waiting for another process" in second.output(), "the second to wait")
    s3.release.set()

    dest = node.weights_dir(URI) / cache_directory_name(URI)
    assert first.model_path() == second.model_path() == dest
    assert read_tree(dest) == CHECKPOINT
    assert download_counts(s3, URI, CHECKPOINT) == dict.fromkeys(CHECKPOINT, 1)
    assert "by another process; reusing it" in second.output()
    assert leftovers(node.weights_dir(URI)) == [dest.name]


def test_a_recreated_pod_finds_the_copy_and_downloads_nothing(node: Node, s3: CountingS3) -> None:
    dest = node.start_pod(URI).model_path()
    recreated = node.start_pod(URI)
    assert recreated.model_path() == dest
    assert "already complete" in recreated.output()
    assert download_counts(s3, URI, CHECKPOINT) == dict.fromkeys(CHECKPOINT, 1)


def test_a_pod_killed_mid_download_leaves_nothing_a_later_pod_takes_for_complete(
    node: Node, s3: CountingS3
) -> None:
    s3.hold = 1
    killed = node.start_pod(URI)
    wait_for(s3.holding.is_set, "the pod to be mid-download")
    killed.kill()
    s3.release.set()

    directory = node.weights_dir(URI)
    dest = directory / cache_directory_name(URI)
    assert not dest.exists()
    (partial,) = [p for p in directory.iterdir() if ".partial-" in p.name]
    assert not (partial / MARKER_NAME).exists()

    later = node.start_pod(URI)
    assert later.model_path() == dest
    assert read_tree(dest) == CHECKPOINT
    assert "did not finish" in later.output()
    assert leftovers(directory) == [dest.name]
    assert s3.count(URI, HELD_FILE) == 2  # the killed pod's attempt, then the whole copy


def test_a_pod_waiting_behind_one_that_dies_takes_over_the_download(
    node: Node, s3: CountingS3
) -> None:
    s3.hold = 1
    dying = node.start_pod(URI)
    wait_for(s3.holding.is_set, "the first pod to be mid-download")
    waiting = node.start_pod(URI)
    wait_for(lambda: "waiting for another process" in waiting.output(), "the second to wait")
    dying.kill()  # the kernel releases its lock; the waiter's flock succeeds
    s3.release.set()

    dest = waiting.model_path()
    assert read_tree(dest) == CHECKPOINT
    assert leftovers(node.weights_dir(URI)) == [dest.name]


@pytest.mark.parametrize("layout", ["directory per checkpoint", "one directory"])
def test_different_checkpoints_fetched_at_once_never_collide(
    layout: str, node: Node, s3: CountingS3
) -> None:
    # As rendered, each checkpoint has its own cache directory; within one directory
    # (a whole volume mounted as the weights directory) the fetch's names keep them apart.
    shared = node.root / "whole-volume" if layout == "one directory" else None
    s3.hold = 1
    first = node.start_pod(URI, shared)
    wait_for(s3.holding.is_set, "the first checkpoint to be mid-download")
    other = node.start_pod(OTHER_URI, shared)
    other_path = other.model_path()  # finishes while the first is held: no shared lock
    s3.release.set()

    assert read_tree(first.model_path()) == CHECKPOINT
    assert read_tree(other_path) == OTHER_CHECKPOINT
    assert first.model_path() != other_path
    assert download_counts(s3, URI, CHECKPOINT) == dict.fromkeys(CHECKPOINT, 1)
    assert download_counts(s3, OTHER_URI, OTHER_CHECKPOINT) == dict.fromkeys(OTHER_CHECKPOINT, 1)


def test_a_chat_template_rewritten_by_another_pod_is_never_seen_partly_written(
    tmp_path: Path,
) -> None:
    # Pods of one checkpoint write the same template file into the shared directory as they
    # start; an engine that is reading it meanwhile must get the whole text every time.
    template = "{% for message in messages %}{{ message.content }}{% endfor %}\n" * 2000
    args = argparse.Namespace(chat_template=template, weights_dir=str(tmp_path), dry_run=False)
    path = Path(chat_template_file(args) or "")
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            chat_template_file(args)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        seen = {path.read_text() for _ in range(3000)}
    finally:
        stop.set()
        writer.join()
    assert seen == {template}
