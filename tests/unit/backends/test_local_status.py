"""A local group's status in words, without spawning: reasons come from structured causes
(never a log line), say what is now, and leave the history to GET's per-group detail."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_launch.backends.local import status
from llm_launch.backends.local.backend import observe_runtime
from llm_launch.backends.local.capacity import Capacity
from llm_launch.backends.local.controller import EndpointRuntime
from llm_launch.backends.local.group import GroupPorts, ProcessGroup
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.backends.local.processes import LocalProcess, process_start_time
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.groups import CauseKind, GroupCause
from llm_launch.domain.progress import Phase, StartupProgress, WeightsProgress
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body

GB = 1_000_000_000
LOG_LINE = "CUDA out of memory. Tried to allocate 20.00 GiB"
AT = datetime(2026, 1, 2, 12, 3, 5, tzinfo=UTC)


def an_endpoint(**overrides: Any) -> Endpoint:
    now = datetime.now(UTC)
    body = endpoint_body(inference_framework="sglang", **overrides)
    spec = build_spec(body, load_hardware_catalog())
    return Endpoint("end_1", "alice", spec, EndpointStatus.UPDATE_PENDING, None, 1, now, now)


def a_group(log_dir: Path, *names: str, **state: Any) -> ProcessGroup:
    """A group whose processes are this test's own (alive) process, under those names."""
    group = ProcessGroup("end_1", 0, 1, GroupPorts(1, 2, (3, 4)), log_dir)
    me = os.getpid()
    group.processes = [
        LocalProcess(name, me, process_start_time(me) or 0, log_dir / f"{name}.log")
        for name in names
    ]
    for key, value in state.items():
        setattr(group, key, value)
    return group


def a_cause(
    kind: CauseKind = CauseKind.EXITED, process: str = "rank-1", **fields: Any
) -> GroupCause:
    facts: dict[str, Any] = {"saw": "killed by SIGKILL", "signal": "SIGKILL", "excerpt": LOG_LINE}
    return GroupCause(kind, process, at=AT, **{**facts, **fields})


def observed(group: ProcessGroup, mode: str = "real", **overrides: Any) -> tuple[str, str]:
    runtime = EndpointRuntime(
        endpoint=an_endpoint(**overrides), plan_for=lambda e, p: None,  # type: ignore[arg-type,return-value]
        capacity=Capacity(PortAllocator()), log_root=Path("/tmp"), base_env={}, http=None,  # type: ignore[arg-type]
        persist=lambda r: None, groups={group.index: group},
    )  # fmt: skip
    seen = observe_runtime(runtime, mode)
    return seen.status.value, seen.reason or ""


def report(path: Path, rank: int, phase: Phase, **fields: Any) -> None:
    path.write_text(StartupProgress(rank, phase, time.time(), **fields).to_json())


def test_a_recreated_group_says_which_rank_ended_how_and_when_and_not_its_log(
    tmp_path: Path,
) -> None:
    group = a_group(tmp_path, restarts=2, consecutive_failures=1, recovered=False,
                    last_cause=a_cause(), next_start_at=time.monotonic() + 60)  # fmt: skip
    group.processes = []  # stopped, waiting for its backoff
    state, reason = observed(group)
    assert state == "UPDATE_IN_PROGRESS"
    assert reason.startswith(
        "group 0: worker rank 1 killed by SIGKILL; group recreated at 12:03:05 UTC (restart 2); "
        "starting again in "
    )
    assert LOG_LINE not in reason


def test_a_hung_leader_reads_as_the_generation_check_it_stopped_answering(tmp_path: Path) -> None:
    hung = a_cause(CauseKind.HUNG, "rank-0", saw="stopped answering the generation check for 31 s")
    group = a_group(tmp_path, "rank-0", "forwarder", restarts=1, recovered=False, last_cause=hung)
    _, reason = observed(group)
    assert "group 0: leader stopped answering the generation check for 31 s; group recreated" in (
        reason
    )


def test_a_crash_loop_is_update_failed_naming_the_cause_without_its_log(tmp_path: Path) -> None:
    cause = a_cause(process="rank-0", saw="exited with status 3", exit_code=3, signal=None)
    group = a_group(tmp_path, restarts=3, consecutive_failures=3, recovered=False,
                    last_cause=cause)  # fmt: skip
    state, reason = observed(group)
    assert state == "UPDATE_FAILED"
    assert "group 0 keeps failing (3 times in a row): leader (rank 0) exited with status 3" in (
        reason
    )
    assert LOG_LINE not in reason


def test_a_forwarder_that_keeps_exiting_fails_the_endpoint_like_a_group(tmp_path: Path) -> None:
    cause = a_cause(CauseKind.FORWARDER_EXITED, "forwarder", saw="exited with status 1",
                    exit_code=1, signal=None)  # fmt: skip
    group = a_group(tmp_path, "rank-0", forwarder_restarts=3, forwarder_failures=3,
                    recovered=False, last_cause=cause)  # fmt: skip
    state, reason = observed(group)
    assert state == "UPDATE_FAILED"
    assert "forwarder exited with status 1; forwarder restarted at 12:03:05 UTC" in reason
    assert "(forwarder restart 3)" in reason
    assert "forwarder starting again in" in reason  # the engine ranks keep running


def test_once_ready_again_the_reason_is_ready_and_the_history_is_in_the_detail(
    tmp_path: Path,
) -> None:
    group = a_group(tmp_path, "rank-0", "rank-1", "forwarder", ready=True, restarts=2,
                    recovered=True, last_cause=a_cause())  # fmt: skip
    state, reason = observed(group, "simulated", nodes_per_worker=2, gpus=2, num_shards=2)
    assert state == "READY"
    assert reason.startswith("ready; simulated engine")
    assert "SIGKILL" not in reason and "restart" not in reason

    detail = status.detail(group, time.monotonic())
    assert (detail.ready, detail.phase, detail.restarts) == (True, "ready", 2)
    assert detail.last_cause is not None and detail.last_cause.excerpt == LOG_LINE
    assert [p.name for p in detail.processes] == ["rank-0", "rank-1", "forwarder"]
    assert all(p.alive and p.pid == os.getpid() for p in detail.processes)


def test_a_group_failing_its_check_after_recovering_no_longer_names_the_old_cause(
    tmp_path: Path,
) -> None:
    group = a_group(tmp_path, "rank-0", "forwarder", ever_ready=True, recovered=True,
                    last_ready_at=time.monotonic() - 5, last_cause=a_cause())  # fmt: skip
    _, reason = observed(group)
    assert reason.startswith("group 0: leader failing the generation check for 5 s")
    assert "SIGKILL" not in reason


def test_a_starting_group_shows_each_ranks_startup_report(tmp_path: Path) -> None:
    weights = WeightsProgress(done_bytes=290 * GB, total_bytes=700 * GB, rate_bytes_per_s=1.1 * GB)
    report(tmp_path / "rank-0.progress.json", 0, Phase.DOWNLOADING_WEIGHTS, weights=weights)
    report(tmp_path / "rank-1.progress.json", 1, Phase.WAITING_FOR_LEADER)
    group = a_group(tmp_path, "rank-0", "rank-1", "forwarder")
    _, reason = observed(group, nodes_per_worker=2, gpus=2, num_shards=2)
    assert reason.startswith(
        "group 0 starting: rank 0 downloading weights 41% (290/700 GB, 1.1 GB/s), "
        "rank 1 waiting for the leader"
    )
    progress = {p.name: p.progress for p in status.detail(group, time.monotonic()).processes}
    assert progress == {
        "rank-0": "downloading weights 41% (290/700 GB, 1.1 GB/s)",
        "rank-1": "waiting for the leader",
        "forwarder": None,
    }


def test_a_rank_without_a_report_or_with_a_torn_one_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "rank-1.progress.json").write_text('{"rank": 1, "pha')
    group = a_group(tmp_path, "rank-0", "rank-1", "forwarder")
    _, reason = observed(group, nodes_per_worker=2, gpus=2, num_shards=2)
    assert reason.startswith("group 0 starting: waiting for the leader's generation check")
    report(tmp_path / "rank-1.progress.json", 1, Phase.FAILED, detail="no such checkpoint")
    _, reason = observed(group, nodes_per_worker=2, gpus=2, num_shards=2)
    assert reason.startswith("group 0 starting: rank 1 startup failed: no such checkpoint")


def test_a_down_forwarder_is_listed_as_not_running(tmp_path: Path) -> None:
    cause = a_cause(CauseKind.FORWARDER_EXITED, "forwarder")
    group = a_group(tmp_path, "rank-0", forwarder_restarts=1, forwarder_failures=1,
                    recovered=False, last_cause=cause)  # fmt: skip
    detail = status.detail(group, time.monotonic())
    assert [(p.name, p.pid, p.alive) for p in detail.processes] == [
        ("rank-0", os.getpid(), True),
        ("forwarder", None, False),
    ]
    assert detail.phase.startswith("forwarder starting again in")
    assert detail.forwarder_restarts == 1


def test_the_restart_history_and_last_cause_survive_the_group_record(tmp_path: Path) -> None:
    group = a_group(tmp_path, "rank-0", "forwarder", restarts=4, forwarder_restarts=2,
                    recovered=True, last_cause=a_cause())  # fmt: skip
    adopted = ProcessGroup.adopt(group.to_record())
    assert adopted is not None
    assert (adopted.restarts, adopted.forwarder_restarts, adopted.recovered) == (4, 2, True)
    assert adopted.last_cause == a_cause()
