"""The startup program's progress reports: the phases a leader and a worker go through, the
numbers of a real fetch, the failed report, and the fetch a simulated engine still runs.

The program runs in this process up to its exec, which is replaced by a recorder; every
report is read back from the real file the moment it is written.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_launch.domain.progress import PROGRESS_FILE_ENV, Phase, StartupProgress, WeightsProgress
from llm_launch.runtime.startup import program as startup
from llm_launch.runtime.startup import progress as startup_progress
from llm_launch.runtime.startup import weights
from llm_launch.runtime.startup.progress import FetchMeter, ProgressReporter
from tests.unit.runtime.test_weights import CHECKPOINT, install_fake_tool, write_tree

S3_URI = "s3://bucket/models/llama"
CHECKPOINT_BYTES = sum(len(data) for data in CHECKPOINT.values())


class Execd(Exception):
    """The exec "happened": the program would be the engine now."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.argv = argv


class RecordingReporter(ProgressReporter):
    """The real reporter, keeping each report as read back from its file."""

    def __init__(self, path: Path, rank: int = 0) -> None:
        super().__init__(path, rank, log=lambda _: None)
        self.seen: list[StartupProgress] = []

    def report(self, phase: Phase, detail: str | None = None, weights: Any = None) -> None:
        super().report(phase, detail, weights)
        assert self.path is not None
        read = StartupProgress.from_json(self.path.read_text())
        assert read is not None
        self.seen.append(read)

    def phases(self) -> list[Phase]:
        """The phases in order, each once however many reports it had in a row."""
        phases: list[Phase] = []
        for report in self.seen:
            if not phases or phases[-1] is not report.phase:
                phases.append(report.phase)
        return phases


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean pod environment, a fake s5cmd that copies CHECKPOINT slowly, and no exec."""
    for name in ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX", "POD_IP",
                 "LLM_LAUNCH_CHECKPOINT_ROOTS", "LLM_LAUNCH_ENGINE_MODE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "HF_HUB_OFFLINE", PROGRESS_FILE_ENV):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    source = write_tree(tmp_path / "bucket")
    install_fake_tool(bin_dir, "s5cmd", source, per_file_delay_s=0.05)
    monkeypatch.setattr(weights, "PROGRESS_POLL_S", 0.01)
    monkeypatch.setattr(startup_progress, "FETCH_REPORT_INTERVAL_S", 0.0)

    def execvpe(program: str, argv: list[str], env: dict[str, str]) -> None:
        raise Execd(argv)

    monkeypatch.setattr(startup.os, "execvpe", execvpe)
    return tmp_path


def args(
    pod: Path, *extra: str, rank: int = 0, nnodes: int = 2, dist_port: int = 5002
) -> list[str]:
    return [
        "sglang", "--tp-size", "2", "--model", "llama", "--nnodes", str(nnodes),
        "--node-rank", str(rank), "--leader-address", "127.0.0.1",
        "--worker-addresses", "127.0.0.1", "--engine-port", "5005",
        "--dist-port", str(dist_port), "--weights-dir", str(pod / "models"),
        "--resolve-timeout", "5", "--engine-program", f"{sys.executable} -c pass", *extra,
    ]  # fmt: skip


def run_to_exec(argv: list[str], reporter: ProgressReporter) -> list[str]:
    with pytest.raises(Execd) as execd:
        startup.run(argv, reporter)
    return execd.value.argv


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections: the leader's rendezvous, up."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_leader_reports_resolving_downloading_waiting_for_workers_then_starting(
    pod: Path,
) -> None:
    reporter = RecordingReporter(pod / "progress.json")
    run_to_exec(args(pod, f"--checkpoint-path={S3_URI}"), reporter)
    assert reporter.phases() == [
        Phase.RESOLVING_LEADER,
        Phase.DOWNLOADING_WEIGHTS,
        Phase.WAITING_FOR_WORKERS,
        Phase.STARTING_ENGINE,
    ]
    waiting = [r for r in reporter.seen if r.phase is Phase.WAITING_FOR_WORKERS]
    assert waiting[0].detail == "1 of 1 not scheduled yet: 127.0.0.1"  # which are awaited
    assert waiting[-1].detail == "all 1 scheduled"
    assert {r.rank for r in reporter.seen} == {0}


def test_a_worker_reports_waiting_for_the_leader_before_it_starts_its_engine(
    pod: Path, listening: int
) -> None:
    reporter = RecordingReporter(pod / "progress.json")
    run_to_exec(args(pod, f"--checkpoint-path={S3_URI}", rank=1, dist_port=listening), reporter)
    assert reporter.phases() == [
        Phase.RESOLVING_LEADER,
        Phase.DOWNLOADING_WEIGHTS,
        Phase.WAITING_FOR_LEADER,
        Phase.STARTING_ENGINE,
    ]
    assert {r.rank for r in reporter.seen} == {1}


def test_a_worker_does_not_start_its_engine_while_the_leader_does_not_answer(
    pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "LEADER_POLL_S", 0.02)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))  # bound, not listening yet: connections are refused
        port = server.getsockname()[1]
        reporter = RecordingReporter(pod / "progress.json")
        outcome: list[BaseException] = []
        worker = threading.Thread(
            target=lambda: _capture(outcome, startup.run, args(pod, rank=1, dist_port=port),
                                    reporter),
            daemon=True,
        )  # fmt: skip
        worker.start()
        _wait(lambda: Phase.WAITING_FOR_LEADER in reporter.phases())
        assert worker.is_alive() and outcome == []  # waiting, the engine not started
        assert reporter.seen[-1].detail == f"its rendezvous port 127.0.0.1:{port}"
        server.listen()
        worker.join(timeout=30)
    assert [type(e) for e in outcome] == [Execd]
    assert reporter.phases()[-1] is Phase.STARTING_ENGINE


def test_the_fetch_reports_bytes_done_the_total_and_a_rate(pod: Path) -> None:
    reporter = RecordingReporter(pod / "progress.json")
    run_to_exec(args(pod, f"--checkpoint-path={S3_URI}", nnodes=1), reporter)
    numbers = [r.weights for r in reporter.seen if r.weights is not None]
    done = [w.done_bytes for w in numbers]
    assert done == sorted(done)
    assert any(0 < d < CHECKPOINT_BYTES for d in done)  # seen part-way
    assert numbers[-1].done_bytes == numbers[-1].total_bytes == CHECKPOINT_BYTES
    assert any(w.rate_bytes_per_s > 0 for w in numbers)
    line = next(r for r in reporter.seen if r.weights and r.weights.done_bytes).describe()
    assert line.startswith("downloading weights (") and "GB/s" in line


def test_a_failure_is_reported_with_its_error_and_the_program_exits_1(
    pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pod / "progress.json"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(path))
    missing = f"file://{pod}/nonexistent"
    with pytest.raises(SystemExit) as exit_:
        startup.main(args(pod, f"--checkpoint-path={missing}", nnodes=1))
    assert exit_.value.code == 1
    report = StartupProgress.from_json(path.read_text())
    assert report is not None and report.phase is Phase.FAILED
    assert report.detail == f"cannot fetch checkpoint {missing}: {pod}/nonexistent does not exist"


def test_without_the_variable_no_report_is_written(pod: Path) -> None:
    reporter = ProgressReporter.from_environment(lambda _: None, {})
    run_to_exec(args(pod, nnodes=1), reporter)
    assert reporter.path is None
    assert not list(pod.glob("*.json"))


def test_a_dry_run_writes_no_report(pod: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reporter = RecordingReporter(pod / "progress.json")
    assert startup.run(args(pod, "--dry-run", nnodes=1), reporter) == 0
    assert reporter.seen == [] and not (pod / "progress.json").exists()


def test_a_report_that_cannot_be_written_is_said_once_and_the_startup_goes_on(
    pod: Path,
) -> None:
    (pod / "a-file").write_text("")
    said: list[str] = []
    reporter = ProgressReporter(pod / "a-file" / "progress.json", 0, said.append)
    run_to_exec(args(pod, f"--checkpoint-path={S3_URI}", nnodes=1), reporter)
    assert len(said) == 1 and "cannot write the progress report" in said[0]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_a_report_is_as_readable_as_the_umask_lets_files_be(
    tmp_path: Path, umask: int, mode: int
) -> None:
    # In a pod (022) the forwarder, another user, reads it; locally (077) it stays private.
    previous = os.umask(umask)
    try:
        reporter = ProgressReporter(tmp_path / "progress.json", 0, print)
        reporter.report(Phase.STARTING_ENGINE)
    finally:
        os.umask(previous)
    assert (tmp_path / "progress.json").stat().st_mode & 0o777 == mode


class TestSimulatedEngines:
    def test_a_local_checkpoint_is_checked_and_given_to_the_simulated_engine(
        self, pod: Path
    ) -> None:
        local = write_tree(pod / "checkpoint")
        reporter = RecordingReporter(pod / "progress.json")
        argv = run_to_exec(
            args(pod, f"--checkpoint-path=file://{local}", "--engine-mode", "simulated",
                 nnodes=1),
            reporter,
        )  # fmt: skip
        assert argv[argv.index("--model-path") + 1] == str(local)  # not the model id

    @pytest.mark.parametrize("content", ["missing", "empty"])
    def test_a_missing_or_empty_local_checkpoint_fails_as_in_real_mode(
        self, pod: Path, content: str
    ) -> None:
        path = pod / "checkpoint"
        if content == "empty":
            path.mkdir()
        reporter = RecordingReporter(pod / "progress.json")
        with pytest.raises(startup.StartupError, match=f"cannot fetch checkpoint file://{path}"):
            startup.run(
                args(pod, f"--checkpoint-path=file://{path}", "--engine-mode", "simulated",
                     nnodes=1),
                reporter,
            )  # fmt: skip

    def test_s3_behind_a_configured_endpoint_is_fetched(
        self, pod: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the fake s5cmd ignores it
        reporter = RecordingReporter(pod / "progress.json")
        argv = run_to_exec(
            args(pod, f"--checkpoint-path={S3_URI}", "--engine-mode", "simulated", nnodes=1),
            reporter,
        )
        assert Path(argv[argv.index("--model-path") + 1]).parent == pod / "models"
        assert Phase.DOWNLOADING_WEIGHTS in reporter.phases()

    @pytest.mark.parametrize(
        ("uri", "env", "fetched"),
        [
            ("/models/llama", {}, True),
            ("file:///models/llama", {}, True),
            ("s3://b/llama", {}, False),
            ("s3://b/llama", {"AWS_ENDPOINT_URL": "http://minio:9000"}, True),
            ("s3://b/llama", {"AWS_ENDPOINT_URL_S3": "http://minio:9000"}, True),
            ("hf://meta-llama/Llama-3-8B", {}, False),
            ("hf://meta-llama/Llama-3-8B", {"HF_HUB_OFFLINE": "1"}, True),
            ("gs://b/llama", {}, False),
            ("ftp://b/llama", {}, True),  # fetched, and so refused as in real mode
        ],
    )
    def test_what_the_simulated_mode_fetches(
        self, uri: str, env: dict[str, str], fetched: bool
    ) -> None:
        assert (startup.simulated_fetch_skipped(uri, env) is None) is fetched


class TestFetchMeter:
    def test_reports_come_at_most_once_a_second_but_the_complete_one_always(self) -> None:
        now = [0.0]
        reports: list[WeightsProgress | None] = []

        class Keep(ProgressReporter):
            def report(self, phase: Phase, detail: str | None = None, weights: Any = None) -> None:
                reports.append(weights)

        meter = FetchMeter(Keep(None, 0, print), clock=lambda: now[0])
        for second, done in [(0.0, 0), (0.5, 100), (1.0, 200), (1.2, 250), (1.3, 400)]:
            now[0] = second
            meter(done, 400)
        assert [w.done_bytes for w in reports if w] == [0, 200, 400]
        assert reports[-1] == WeightsProgress(400, 400, pytest.approx(400 / 1.3))


def _capture(outcome: list[BaseException], call: Callable[..., Any], *arguments: Any) -> None:
    try:
        call(*arguments)
    except BaseException as exc:
        outcome.append(exc)


def _wait(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
