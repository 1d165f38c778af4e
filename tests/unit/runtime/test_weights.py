"""Checkpoint fetching without a network: local paths, command-line clients replaced by fake
programs on PATH (real processes that record their argv and copy from a local directory), and
the Hugging Face and Google Cloud Storage libraries replaced by fake modules.

The S3 library path runs against a moto server in tests/integration/test_weights.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_launch.runtime.startup import weights
from llm_launch.runtime.startup.weights import (
    MARKER_NAME,
    WeightsError,
    destination_name,
    fetch_checkpoint,
)
from tests.support.weights import Lines, read_tree

CHECKPOINT = {
    "config.json": b'{"model_type": "llama"}',
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    "weights/model-00001-of-00002.safetensors": bytes(range(256)) * 64,
    "weights/model-00002-of-00002.safetensors": bytes(range(255, -1, -1)) * 32,
    "weights/nested/deeper/extra.bin": b"\x00" * 1000,
}

FAKE_TOOL = """\
#!{python}
import json, shutil, sys, time
from pathlib import Path

config = json.loads({config!r})
with open(config["calls"], "a") as calls:
    calls.write(json.dumps(sys.argv) + "\\n")
target = Path(sys.argv[-1])
if config["hold_until"]:
    Path(config["hold_until"] + ".started").touch()
    deadline = time.monotonic() + 20  # never outlive a failed test for long
    while not Path(config["hold_until"]).exists():
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.02)
source = Path(config["source"])
for index, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
    if index == config["fail_after"]:
        print(config["failure"], file=sys.stderr)
        sys.exit(1)
    out = target / path.relative_to(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out)
    time.sleep(config["per_file_delay_s"])
if config["racer_uri"]:
    dest = target.parent / target.name.split(".partial-")[0]
    dest.mkdir()
    (dest / "racer.txt").write_text("the racer's copy")
    (dest / {marker!r}).write_text(json.dumps({{"uri": config["racer_uri"]}}))
"""


@dataclass
class FakeTool:
    calls_file: Path

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


def install_fake_tool(
    bin_dir: Path,
    name: str,
    source: Path,
    *,
    fail_after: int | None = None,
    failure: str = "",
    per_file_delay_s: float = 0.0,
    hold_until: Path | None = None,
    racer_uri: str | None = None,
) -> FakeTool:
    """A program `name` in `bin_dir` that copies `source` into its last argument."""
    calls = bin_dir / f"{name}.calls"
    config = {
        "calls": str(calls),
        "source": str(source),
        "fail_after": fail_after,
        "failure": failure,
        "per_file_delay_s": per_file_delay_s,
        "hold_until": str(hold_until) if hold_until else None,
        "racer_uri": racer_uri,
    }
    script = bin_dir / name
    text = FAKE_TOOL.format(python=sys.executable, config=json.dumps(config), marker=MARKER_NAME)
    script.write_text(text)
    script.chmod(0o755)
    return FakeTool(calls)


def write_tree(root: Path, files: dict[str, bytes] = CHECKPOINT) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only this directory: no real s5cmd, gcloud or gsutil is found."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "bucket-contents")


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def leftovers(weights_dir: Path) -> list[str]:
    """Entries besides lock files: final directories and partial copies."""
    return sorted(p.name for p in weights_dir.iterdir() if not p.name.endswith(".lock"))


URI = "s3://scale-ml/models/deepseek-ai/DeepSeek-R1"


class TestDestinationNames:
    def test_the_name_is_stable_and_ignores_a_trailing_slash(self) -> None:
        assert destination_name(URI) == destination_name(URI)
        assert destination_name(URI + "/") == destination_name(URI)

    def test_different_uris_get_different_names(self) -> None:
        assert destination_name("s3://a/b-c") != destination_name("s3://a/b/c")
        assert destination_name("hf://org/m@v1") != destination_name("hf://org/m@v2")

    def test_the_name_is_one_safe_path_component_that_shows_the_model(self) -> None:
        name = destination_name("gs://bucket/../weird name/ünï/..")
        assert "/" not in name and not name.startswith(".")
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert "DeepSeek-R1" in destination_name(URI)

    def test_a_long_uri_gets_a_bounded_name(self) -> None:
        assert len(destination_name("s3://b/" + "x" * 1000)) <= 93


class TestLocalCheckpoints:
    def test_a_file_uri_is_used_in_place(self, source: Path, weights_dir: Path) -> None:
        log = Lines()
        assert fetch_checkpoint(f"file://{source}", weights_dir, log=log) == source
        assert log.matching("in place")
        assert not weights_dir.exists()

    def test_an_absolute_path_is_used_in_place(self, source: Path, weights_dir: Path) -> None:
        assert fetch_checkpoint(str(source), weights_dir, log=Lines()) == source

    def test_a_missing_directory_is_an_error(self, tmp_path: Path, weights_dir: Path) -> None:
        with pytest.raises(WeightsError, match=r"file://.*/absent.*does not exist"):
            fetch_checkpoint(f"file://{tmp_path}/absent", weights_dir, log=Lines())

    def test_an_empty_directory_is_an_error(self, tmp_path: Path, weights_dir: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(WeightsError, match="empty directory"):
            fetch_checkpoint(str(tmp_path / "empty"), weights_dir, log=Lines())

    def test_a_file_is_not_a_checkpoint_directory(self, source: Path, weights_dir: Path) -> None:
        with pytest.raises(WeightsError, match="not a directory"):
            fetch_checkpoint(str(source / "config.json"), weights_dir, log=Lines())


class TestUnusableUris:
    @pytest.mark.parametrize(
        ("uri", "cause"),
        [
            ("models/llama", "absolute path"),
            ("ftp://host/models", "unsupported scheme ftp://"),
            ("file://relative/path", "absolute path"),
            ("hf://a/b/c", "hf://<org>/<repo>"),
            ("hf://org/repo@", "hf://<org>/<repo>"),
        ],
    )
    def test_the_error_names_the_uri_and_the_fix(
        self, uri: str, cause: str, weights_dir: Path
    ) -> None:
        with pytest.raises(WeightsError) as caught:
            fetch_checkpoint(uri, weights_dir, log=Lines())
        assert uri in str(caught.value) and cause in str(caught.value)


class TestS5cmd:
    def test_s5cmd_on_path_copies_the_prefix_with_a_wildcard(
        self,
        bin_dir: Path,
        source: Path,
        weights_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
        tool = install_fake_tool(bin_dir, "s5cmd", source)
        log = Lines()

        dest = fetch_checkpoint(URI + "/", weights_dir, log=log)

        assert dest == weights_dir / destination_name(URI)
        [argv] = tool.calls()
        assert argv[:-1] == [
            str(bin_dir / "s5cmd"),
            "--endpoint-url", "http://127.0.0.1:9000",
            "--log", "error",
            "cp", "s3://scale-ml/models/deepseek-ai/DeepSeek-R1/*",
        ]  # fmt: skip
        assert argv[-1].endswith("/") and ".partial-" in argv[-1]
        assert read_tree(dest) == CHECKPOINT
        marker = json.loads((dest / MARKER_NAME).read_text())
        assert marker["uri"] == URI
        assert marker["files"] == len(CHECKPOINT)
        assert marker["bytes"] == sum(len(data) for data in CHECKPOINT.values())
        assert log.matching("with s5cmd") and log.matching("fetched")
        assert leftovers(weights_dir) == [dest.name]

    def test_a_whole_bucket_is_copied_with_a_root_wildcard(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        tool = install_fake_tool(bin_dir, "s5cmd", source)
        fetch_checkpoint("s3://weights-bucket", weights_dir, log=Lines())
        assert tool.calls()[0][-2] == "s3://weights-bucket/*"

    def test_a_complete_copy_is_not_fetched_again(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        tool = install_fake_tool(bin_dir, "s5cmd", source)
        first = fetch_checkpoint(URI, weights_dir, log=Lines())
        log = Lines()
        assert fetch_checkpoint(URI, weights_dir, log=log) == first
        assert len(tool.calls()) == 1
        assert log.matching("skipping the fetch")

    def test_a_failure_mid_copy_leaves_no_final_or_partial_directory(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        failure = "ERROR cp s3://scale-ml/models/x: NoSuchKey: The specified key does not exist."
        install_fake_tool(bin_dir, "s5cmd", source, fail_after=2, failure=failure)

        with pytest.raises(WeightsError) as caught:
            fetch_checkpoint(URI, weights_dir, log=Lines())

        message = str(caught.value)
        assert URI in message and "no objects found" in message and "NoSuchKey" in message
        assert "\n" not in message
        assert leftovers(weights_dir) == []

    @pytest.mark.parametrize(
        ("output", "cause"),
        [
            ('ERROR "ls s3://nope/x/*": NoSuchBucket: bucket does not exist', "bucket not found"),
            ("ERROR AccessDenied: Access Denied status code: 403", "access denied"),
            ('ERROR "cp s3://b/x/*": no object found', "no objects found"),
            ("ERROR something unusual", "failed"),
        ],
    )
    def test_the_tool_output_names_the_cause(
        self, output: str, cause: str, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        install_fake_tool(bin_dir, "s5cmd", source, fail_after=0, failure=output)
        with pytest.raises(WeightsError, match=f"{URI}: {cause} \\(s5cmd exited with status 1"):
            fetch_checkpoint(URI, weights_dir, log=Lines())

    def test_a_partial_copy_from_a_crashed_attempt_is_replaced(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        install_fake_tool(bin_dir, "s5cmd", source)
        stale = weights_dir / f"{destination_name(URI)}.partial-1-deadbeef"
        write_tree(stale, {"config.json": b"truncated", "junk.bin": b"x"})
        log = Lines()

        dest = fetch_checkpoint(URI, weights_dir, log=log)

        assert read_tree(dest) == CHECKPOINT
        assert not stale.exists()
        assert log.matching("did not finish")

    def test_a_source_with_no_files_is_an_error(
        self, bin_dir: Path, tmp_path: Path, weights_dir: Path
    ) -> None:
        (tmp_path / "nothing").mkdir()
        install_fake_tool(bin_dir, "s5cmd", tmp_path / "nothing")
        with pytest.raises(WeightsError, match="holds no files"):
            fetch_checkpoint(URI, weights_dir, log=Lines())
        assert leftovers(weights_dir) == []


class TestProgress:
    def test_progress_is_reported_periodically_while_copying(
        self, bin_dir: Path, source: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(weights, "PROGRESS_INTERVAL_S", 0.05)
        install_fake_tool(bin_dir, "s5cmd", source, per_file_delay_s=0.1)
        log = Lines()
        fetch_checkpoint(URI, weights_dir, log=log)
        progress = log.matching("so far")
        assert len(progress) >= 2
        assert all(URI in line and " files, " in line for line in progress)

    def test_the_progress_callback_hears_the_bytes_on_disk_as_the_copy_goes(
        self, bin_dir: Path, source: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(weights, "PROGRESS_POLL_S", 0.02)
        install_fake_tool(bin_dir, "s5cmd", source, per_file_delay_s=0.1)
        heard: list[tuple[int, int | None]] = []
        fetch_checkpoint(URI, weights_dir, log=Lines(), progress=lambda *a: heard.append(a))
        size = sum(len(data) for data in CHECKPOINT.values())
        done = [d for d, _ in heard]
        assert done == sorted(done)  # it only grows
        assert len({d for d in done if 0 < d < size}) >= 2  # seen part-way, more than once
        assert heard[-1] == (size, size)  # complete: the total is what landed
        assert all(total is None for _, total in heard[:-1])  # s5cmd does not list first

    def test_a_copy_already_complete_reports_no_progress(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        install_fake_tool(bin_dir, "s5cmd", source)
        fetch_checkpoint(URI, weights_dir, log=Lines())
        heard: list[tuple[int, int | None]] = []
        fetch_checkpoint(URI, weights_dir, log=Lines(), progress=lambda *a: heard.append(a))
        assert heard == []

    def test_hundreds_of_files_do_not_give_a_line_each(
        self, bin_dir: Path, tmp_path: Path, weights_dir: Path
    ) -> None:
        many = write_tree(tmp_path / "many", {f"shard-{i:04d}.bin": b"x" for i in range(300)})
        install_fake_tool(bin_dir, "s5cmd", many)
        log = Lines()
        dest = fetch_checkpoint(URI, weights_dir, log=log)
        assert len(log.lines) <= 3
        assert "300 files" in log.matching("fetched")[0]
        assert json.loads((dest / MARKER_NAME).read_text())["files"] == 300


class TestRaces:
    def test_a_second_process_waits_for_the_first_and_reuses_its_copy(
        self, bin_dir: Path, source: Path, weights_dir: Path, tmp_path: Path
    ) -> None:
        release = tmp_path / "release"
        tool = install_fake_tool(bin_dir, "s5cmd", source, hold_until=release)
        with fetching_process(URI, weights_dir, tmp_path / "first.out") as first:
            wait_for(lambda: Path(f"{release}.started").exists())
            with fetching_process(URI, weights_dir, tmp_path / "second.out") as second:
                wait_for(lambda: "waiting for another process" in second.output())
                release.touch()
        assert first.result() == second.result() == weights_dir / destination_name(URI)
        assert len(tool.calls()) == 1
        assert "fetched" in first.output()
        assert "by another process; reusing it" in second.output()
        assert read_tree(first.result()) == CHECKPOINT
        assert leftovers(weights_dir) == [destination_name(URI)]

    def test_the_loser_of_a_rename_race_discards_its_copy(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        # A racer that held no lock (a file system without locks) finishes first.
        install_fake_tool(bin_dir, "s5cmd", source, racer_uri=URI)
        log = Lines()
        dest = fetch_checkpoint(URI, weights_dir, log=log)
        assert read_tree(dest) == {"racer.txt": b"the racer's copy"}
        assert log.matching("discarding this copy")
        assert leftovers(weights_dir) == [dest.name]

    def test_a_directory_without_marker_is_replaced(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        install_fake_tool(bin_dir, "s5cmd", source)
        write_tree(weights_dir / destination_name(URI), {"half.bin": b"half"})
        dest = fetch_checkpoint(URI, weights_dir, log=Lines())
        assert read_tree(dest) == CHECKPOINT


@dataclass
class FetchingProcess:
    process: subprocess.Popen[bytes]
    out: Path

    def output(self) -> str:
        return self.out.read_text()

    def result(self) -> Path:
        assert self.process.wait(timeout=20) == 0, self.output()
        return Path(self.output().splitlines()[-1])


@contextmanager
def fetching_process(uri: str, weights_dir: Path, out: Path) -> Iterator[FetchingProcess]:
    """`fetch_checkpoint` in a separate process; its log and result (last line) go to `out`."""
    code = (
        "import sys; from pathlib import Path; "
        "from llm_launch.runtime.startup.weights import fetch_checkpoint; "
        "print(fetch_checkpoint(sys.argv[1], Path(sys.argv[2])))"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", code, uri, str(weights_dir)],
            stdout=sink,
            stderr=sink,
            env=env,
            start_new_session=True,  # its own process group: a failed test ends its tool too
        )
    try:
        yield FetchingProcess(process, out)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    process.wait(timeout=20)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class TestGoogleCloudStorage:
    def test_gcloud_is_preferred_and_copies_recursively(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        gcloud = install_fake_tool(bin_dir, "gcloud", source)
        gsutil = install_fake_tool(bin_dir, "gsutil", source)
        dest = fetch_checkpoint("gs://bucket/models/llama/", weights_dir, log=Lines())
        [argv] = gcloud.calls()
        assert argv[1:-1] == ["storage", "cp", "--recursive", "gs://bucket/models/llama/*"]
        assert gsutil.calls() == []
        assert read_tree(dest) == CHECKPOINT

    def test_gsutil_is_used_in_parallel_mode_without_gcloud(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        gsutil = install_fake_tool(bin_dir, "gsutil", source)
        dest = fetch_checkpoint("gs://bucket/models/llama", weights_dir, log=Lines())
        assert gsutil.calls()[0][1:-1] == ["-m", "cp", "-r", "gs://bucket/models/llama/*"]
        assert read_tree(dest) == CHECKPOINT

    def test_access_denied_from_gsutil_names_the_cause(
        self, bin_dir: Path, source: Path, weights_dir: Path
    ) -> None:
        failure = "AccessDeniedException: 403 svc@p.iam does not have storage.objects.list access"
        install_fake_tool(bin_dir, "gsutil", source, fail_after=0, failure=failure)
        with pytest.raises(WeightsError, match=r"gs://bucket/m: access denied \(gsutil exited"):
            fetch_checkpoint("gs://bucket/m", weights_dir, log=Lines())

    def test_the_library_is_used_without_a_command_line_client(
        self, bin_dir: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = {f"models/llama/{name}": data for name, data in CHECKPOINT.items()}
        objects["models/llama-v2/other.bin"] = b"not this one"
        objects["models/llama/folder-marker/"] = b""
        monkeypatch.setitem(sys.modules, "google.cloud.storage", fake_storage({"b": objects}))
        log = Lines()
        dest = fetch_checkpoint("gs://b/models/llama", weights_dir, log=log)
        assert read_tree(dest) == CHECKPOINT
        assert log.matching("with google-cloud-storage")

    def test_a_missing_bucket_through_the_library_names_the_cause(
        self, bin_dir: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "google.cloud.storage", fake_storage({}))
        with pytest.raises(WeightsError, match=r"gs://nope/m: bucket not found \(404"):
            fetch_checkpoint("gs://nope/m", weights_dir, log=Lines())
        assert leftovers(weights_dir) == []

    def test_without_any_client_the_error_says_what_to_install(
        self, bin_dir: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
        with pytest.raises(WeightsError, match=r"gs://b/m: .*gcloud.*pip install google-cloud-st"):
            fetch_checkpoint("gs://b/m", weights_dir, log=Lines())


class NotFound(Exception):
    """Named like google.api_core.exceptions.NotFound, which the module matches by name."""


def fake_storage(buckets: dict[str, dict[str, bytes]]) -> types.ModuleType:
    @dataclass
    class Blob:
        name: str
        data: bytes

        def download_to_filename(self, filename: str) -> None:
            Path(filename).write_bytes(self.data)

    class Client:
        def list_blobs(self, bucket: str, prefix: str = "") -> Iterator[Blob]:
            if bucket not in buckets:
                raise NotFound(f"404 GET https://storage.googleapis.com/b/{bucket}: no bucket")
            for name, data in buckets[bucket].items():
                if name.startswith(prefix):
                    yield Blob(name, data)

    module = types.ModuleType("google.cloud.storage")
    module.Client = Client  # type: ignore[attr-defined]
    return module


class RepositoryNotFoundError(Exception):
    """Named like huggingface_hub's error, which the module matches by name."""


class GatedRepoError(RepositoryNotFoundError):
    pass


class TestHuggingFace:
    def test_a_snapshot_is_downloaded_at_the_revision(
        self, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[dict[str, Any]] = []

        def snapshot_download(**kwargs: Any) -> str:
            calls.append(kwargs)
            write_tree(Path(kwargs["local_dir"]))
            return str(kwargs["local_dir"])

        hub = types.SimpleNamespace(snapshot_download=snapshot_download)
        monkeypatch.setitem(sys.modules, "huggingface_hub", hub)

        dest = fetch_checkpoint("hf://meta-llama/Llama-3.1-8B@a1b2c3", weights_dir, log=Lines())

        [call] = calls
        assert call["repo_id"] == "meta-llama/Llama-3.1-8B" and call["revision"] == "a1b2c3"
        assert ".partial-" in call["local_dir"]
        assert read_tree(dest) == CHECKPOINT
        assert leftovers(weights_dir) == [dest.name]

    def test_no_revision_means_the_default_branch(
        self, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[dict[str, Any]] = []

        def snapshot_download(**kwargs: Any) -> None:
            calls.append(kwargs)
            write_tree(Path(kwargs["local_dir"]))

        monkeypatch.setitem(
            sys.modules,
            "huggingface_hub",
            types.SimpleNamespace(snapshot_download=snapshot_download),
        )
        fetch_checkpoint("hf://gpt2", weights_dir, log=Lines())
        assert calls[0]["repo_id"] == "gpt2" and calls[0]["revision"] is None

    @pytest.mark.parametrize(
        ("error", "cause"),
        [
            (RepositoryNotFoundError("401 Client Error. Repository Not Found"), "not found"),
            (GatedRepoError("403 Client Error. Cannot access gated repo"), "accept its terms"),
        ],
    )
    def test_hub_errors_name_the_cause(
        self, error: Exception, cause: str, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def snapshot_download(**kwargs: Any) -> None:
            (Path(kwargs["local_dir"]) / "partial.bin").write_bytes(b"x")
            raise error

        monkeypatch.setitem(
            sys.modules,
            "huggingface_hub",
            types.SimpleNamespace(snapshot_download=snapshot_download),
        )
        with pytest.raises(WeightsError, match=f"hf://org/private: .*{cause}") as caught:
            fetch_checkpoint("hf://org/private", weights_dir, log=Lines())
        assert caught.value.__cause__ is error
        assert leftovers(weights_dir) == []

    def test_without_huggingface_hub_the_error_says_what_to_install(
        self, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "huggingface_hub", None)
        with pytest.raises(WeightsError, match=r"hf://org/m: .*pip install huggingface_hub"):
            fetch_checkpoint("hf://org/m", weights_dir, log=Lines())
