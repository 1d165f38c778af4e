"""Supervision a user can trust (issue 12 items 2, 3 and 4), on the local backend, with
real simulated groups.

A forwarder that exits is restarted alone: the engine ranks keep their PIDs, the group
leaves routing while its forwarder is down and comes back once the new one's `/readyz`
passes; one that keeps exiting ends UPDATE_FAILED like a crash-looping group. For each
injected failure (a worker or the leader killed, the forwarder killed, the leader frozen)
the reason names the process, the signal and what was done, quotes no log line of the
group's processes, and reads "ready" again after the recovery, the history (restarts,
last cause with its log excerpt) being in the per-group detail. The server logs every
recreation or restart with its cause. Each rank is told where to write its startup
report, afresh at every start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from llm_launch.backends.base import Observation
from llm_launch.backends.local.backend import SIMULATED_NOTE, LocalBackend
from llm_launch.backends.local.group import ProcessGroup
from llm_launch.backends.local.ports import PortAllocator
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.groups import CauseKind
from llm_launch.domain.progress import PROGRESS_FILE_ENV
from llm_launch.domain.status import EndpointStatus
from tests.support.local_groups import simulated_backend, stored_endpoint

HANG_RESTART_S = 3  # short for the test; the default is PlanOptions.hang_restart_s (30 s)
# Log lines the processes of a group write, which no status reason may quote (the
# simulator's own startup line among them).
PROCESS_LOG_LINES = ("SIMULATED ENGINE", "Uvicorn running on", "joined the group",
                     "group formed", "Finished server process", "Application startup")  # fmt: skip
TWO_NODES = {"nodes_per_worker": 2, "gpus": 2, "num_shards": 2}


def an_endpoint(**overrides: Any) -> Endpoint:
    return stored_endpoint("end_watch0001", "watched", **overrides)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    options = {"hang_restart_s": HANG_RESTART_S, "drain_grace_s": 0}
    async with simulated_backend(tmp_path, 43400, an_endpoint(), **options) as backend:
        yield backend


class Watch:
    """Observes an endpoint until a condition holds, keeping every reason it saw."""

    def __init__(self, backend: LocalBackend, endpoint: Endpoint) -> None:
        self.backend, self.endpoint = backend, endpoint
        self.reasons: list[str] = []

    async def until(
        self, done: Callable[[Observation], bool], what: str, deadline_s: float = 90.0
    ) -> Observation:
        deadline = asyncio.get_running_loop().time() + deadline_s
        while True:
            observed = await self.backend.observe(self.endpoint)
            self.reasons.append(observed.reason or "")
            if done(observed):
                return observed
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last: {observed}")
            await asyncio.sleep(0.1)

    async def ready(self) -> Observation:
        return await self.until(lambda o: o.status is EndpointStatus.READY, "READY")

    def group(self) -> ProcessGroup:
        return self.backend._runtimes[self.endpoint.id].groups[0]

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.group().processes}


def quoted_log_lines(reasons: list[str], log_dir: Path) -> list[str]:
    """Lines of the group's process logs (whole, or the known ones) found in a reason."""
    lines = [
        line.strip()
        for path in log_dir.glob("*.log")
        for line in path.read_text(errors="replace").splitlines()
        if len(line.strip()) >= 30 and not line.startswith("=== llm-launch")
    ]
    return [
        piece for reason in reasons for piece in [*PROCESS_LOG_LINES, *lines] if piece in reason
    ]


async def test_a_killed_forwarder_is_restarted_alone_and_the_engine_ranks_keep_running(
    local: LocalBackend,
) -> None:
    endpoint = an_endpoint(**TWO_NODES)
    await local.apply(endpoint)
    watch = Watch(local, endpoint)
    await watch.ready()
    url = local.targets(endpoint)
    before = watch.pids()
    os.kill(before["forwarder"], signal.SIGKILL)

    await watch.until(lambda o: "forwarder killed by SIGKILL" in (o.reason or ""), "the cause")
    assert local.targets(endpoint) == []  # out of routing while its forwarder is down
    assert watch.pids()["rank-0"] == before["rank-0"]

    again = await watch.ready()
    assert again.reason == f"ready; {SIMULATED_NOTE}"
    after = watch.pids()
    assert {k: after[k] for k in ("rank-0", "rank-1")} == {
        k: before[k] for k in ("rank-0", "rank-1")
    }
    assert after["forwarder"] != before["forwarder"]
    assert local.targets(endpoint) == url  # the same port: back in routing
    (detail,) = local.group_details(endpoint)
    assert (detail.restarts, detail.forwarder_restarts) == (0, 1)
    cause = detail.last_cause
    assert cause is not None
    assert (cause.kind, cause.process, cause.signal) == (
        CauseKind.FORWARDER_EXITED, "forwarder", "SIGKILL",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "victim", "sig", "cause"),
    [
        (TWO_NODES, "rank-1", signal.SIGKILL,
         "worker rank 1 killed by SIGKILL; group recreated at "),
        (TWO_NODES, "rank-0", signal.SIGKILL,
         "leader (rank 0) killed by SIGKILL; group recreated at "),
        (TWO_NODES, "forwarder", signal.SIGKILL,
         "forwarder killed by SIGKILL; forwarder restarted at "),
        ({}, "rank-0", signal.SIGSTOP,
         "leader stopped answering the generation check for "),
    ],
    ids=["kill-9-worker", "kill-9-leader", "kill-9-forwarder", "sigstop-leader"],
)  # fmt: skip
async def test_each_failure_is_named_by_its_cause_never_a_log_line_and_ready_follows_recovery(
    local: LocalBackend,
    caplog: pytest.LogCaptureFixture,
    shape: dict[str, int],
    victim: str,
    sig: signal.Signals,
    cause: str,
) -> None:
    endpoint = an_endpoint(**shape)
    await local.apply(endpoint)
    watch = Watch(local, endpoint)
    await watch.ready()
    caplog.set_level(logging.INFO, logger="llm_launch.backends.local")
    os.killpg(watch.pids()[victim], sig)

    named = await watch.until(lambda o: cause in (o.reason or ""), f"a reason naming {cause!r}")
    assert re.search(r"(restarted|recreated) at \d\d:\d\d:\d\d UTC \(", named.reason or "")
    again = await watch.ready()
    assert again.reason == f"ready; {SIMULATED_NOTE}"  # the cause is over
    assert quoted_log_lines(watch.reasons, watch.group().log_dir) == []
    assert not any("None" in reason for reason in watch.reasons)

    (detail,) = local.group_details(endpoint)
    assert detail.last_cause is not None and detail.last_cause.process == victim
    assert detail.last_cause.excerpt  # the log's last lines: in the detail, for people
    assert (detail.restarts + detail.forwarder_restarts) == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "llm_launch.backends.local"]
    assert len([line for line in logged if cause in line]) == 1  # one line, with its cause


async def test_a_forwarder_that_keeps_exiting_ends_update_failed_and_recovers_once_it_stays(
    local: LocalBackend,
) -> None:
    endpoint = an_endpoint()
    await local.apply(endpoint)
    watch = Watch(local, endpoint)
    await watch.ready()
    killed: set[int] = set()

    def kill_new_forwarders(observed: Observation) -> bool:
        forwarder = watch.group().forwarder
        if forwarder is not None and forwarder.pid not in killed:
            killed.add(forwarder.pid)
            os.kill(forwarder.pid, signal.SIGKILL)
        return observed.status is EndpointStatus.UPDATE_FAILED

    failed = await watch.until(kill_new_forwarders, "UPDATE_FAILED")
    assert "keeps failing (3 times in a row): forwarder killed by SIGKILL" in (failed.reason or "")
    assert watch.group().restarts == 0  # the engine was never recreated for it

    again = await watch.ready()
    assert again.reason == f"ready; {SIMULATED_NOTE}"


async def test_each_rank_is_told_where_to_report_its_startup_afresh_at_every_start(
    local: LocalBackend, tmp_path: Path
) -> None:
    endpoint = an_endpoint(**TWO_NODES)
    log_dir = local._log_root(endpoint) / "group-0"
    log_dir.mkdir(parents=True)
    stale = log_dir / "rank-1.progress.json"
    stale.write_text('{"rank": 1, "phase": "downloading-weights", "updated_at": 1.0}')
    await local.apply(endpoint)
    watch = Watch(local, endpoint)
    runtime = local._runtimes[endpoint.id]
    await watch.until(lambda o: 0 in runtime.groups, "the group to start")
    assert not stale.exists() or 'updated_at": 1.0' not in stale.read_text()

    pids = watch.pids()
    for name, report in (("rank-1", "rank-1"), ("forwarder", "rank-0")):
        wanted = f"{PROGRESS_FILE_ENV}={log_dir / f'{report}.progress.json'}"
        assert wanted in environ_of(pids[name])


def environ_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")


async def test_a_starting_group_shows_what_each_rank_reports_in_its_reason_and_detail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An engine that never serves: the group stays starting, each rank at its last report.
    never = f"{sys.executable} -c 'import time; time.sleep(600)'"
    monkeypatch.setenv("LLM_LAUNCH_ENGINE_PROGRAM", never)
    backend = LocalBackend(tmp_path, "simulated", PortAllocator(first=43400, last=43499))
    endpoint = an_endpoint(**TWO_NODES)
    try:
        await backend.apply(endpoint)
        watch = Watch(backend, endpoint)
        starting = await watch.until(
            lambda o: (
                "rank 0 engine starting" in (o.reason or "")
                and "rank 1 waiting for the leader" in (o.reason or "")
            ),
            "both ranks' reports in the reason",
        )
        assert starting.status is EndpointStatus.UPDATE_IN_PROGRESS
        assert (starting.reason or "").startswith("group 0 starting: rank 0 engine starting")
        (detail,) = backend.group_details(endpoint)
        progress = {p.name: p.progress for p in detail.processes}
        assert (progress["rank-0"] or "").startswith("engine starting")
        assert (progress["rank-1"] or "").startswith("waiting for the leader")
        assert progress["forwarder"] is None
        assert detail.phase.startswith("starting: rank 0 engine starting")
    finally:
        await backend.teardown(endpoint)
        await backend.close()


async def test_a_rank_whose_startup_failed_is_named_with_its_reports_error(
    tmp_path: Path,
) -> None:
    roots = (PurePosixPath(str(tmp_path)),)
    backend = LocalBackend(tmp_path, "simulated", PortAllocator(first=43400, last=43499),
                           checkpoint_roots=roots)  # fmt: skip
    missing = f"file://{tmp_path}/nonexistent"
    endpoint = an_endpoint(checkpoint_path=missing)
    try:
        await backend.apply(endpoint)
        failed = await Watch(backend, endpoint).until(
            lambda o: o.status is EndpointStatus.UPDATE_FAILED, "UPDATE_FAILED"
        )
        assert (
            "leader (rank 0) exited with status 1: startup failed: cannot fetch checkpoint "
            f"{missing}: {tmp_path}/nonexistent does not exist; group recreated at "
        ) in (failed.reason or "")
        assert "llm-launch-startup: error" not in (failed.reason or "")  # its log line
        (detail,) = backend.group_details(endpoint)
        assert detail.last_cause is not None and detail.last_cause.exit_code == 1
        assert "llm-launch-startup: error: cannot fetch" in (detail.last_cause.excerpt or "")
    finally:
        await backend.teardown(endpoint)
        await backend.close()
