"""`llm-launch endpoints` as a user watches a rollout: `create`/`update --wait` and their
exit statuses, `logs --follow`, and `list`/`get` in 80 columns, wide, JSON and YAML,
against a real server running simulated local groups."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx
import pytest
import yaml

from tests.builders import endpoint_body, unique_name
from tests.e2e.test_cli import CLI, run_cli
from tests.support.local_groups import kill_marked, wait_for
from tests.support.server import RunningServer, simulated_local_server

KEY = "rollout-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"
WAIT_S = 90


class Local:
    def __init__(self, server: RunningServer, data_dir: Path) -> None:
        self.server, self.data_dir = server, data_dir
        self.client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=30)
        self.roots = data_dir / "checkpoints"

    def cli(self, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LLM_LAUNCH_URL": self.server.url, "LLM_LAUNCH_API_KEY": KEY}
        return subprocess.run(
            [CLI, *args], capture_output=True, text=True, env=env, timeout=timeout
        )

    def body_file(self, body: dict[str, Any]) -> str:
        path = self.data_dir / f"{unique_name('body')}.json"
        path.write_text(json.dumps(body))
        return str(path)

    def failing_body(self, **overrides: Any) -> dict[str, Any]:
        """A body whose checkpoint, under the server's checkpoint roots, does not exist: its
        group's startup fails to fetch it, again and again, and the endpoint UPDATE_FAILED."""
        return endpoint_body(checkpoint_path=str(self.roots / "missing"), **overrides)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    data_dir = tmp_path_factory.mktemp("rollouts")
    (data_dir / "checkpoints").mkdir()
    env = {"LLM_LAUNCH_API_KEYS": f"alice:{KEY}", "LLM_LAUNCH_SIM_TTFT_MS": "5",
           "LLM_LAUNCH_CHECKPOINT_ROOTS": str(data_dir / "checkpoints"),
           MARKER: str(data_dir), "LLM_LAUNCH_PASS_ENV": MARKER}  # fmt: skip
    server = simulated_local_server(data_dir, env).start()
    try:
        yield Local(server, data_dir)
    finally:
        server.stop()
        kill_marked(MARKER, data_dir)


def test_create_wait_exits_0_once_the_endpoint_is_ready(local: Local) -> None:
    name = unique_name("wait")
    result = local.cli("endpoints", "create", "-f", local.body_file(endpoint_body(name=name)),
                       "--wait")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name} is READY" in result.stdout
    assert "UPDATE_PENDING" in result.stdout or "UPDATE_IN_PROGRESS" in result.stdout
    assert local.client.get(f"/v1/llm/model-endpoints/{name}").json()["status"] == "READY"


def test_create_wait_exits_1_with_the_reason_when_the_endpoint_fails(local: Local) -> None:
    name = unique_name("fails")
    result = local.cli("endpoints", "create", "-f", local.body_file(local.failing_body(name=name)),
                       "--wait")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    stderr = " ".join(result.stderr.split())
    assert f"{name} failed (UPDATE_FAILED)" in stderr
    reason = local.client.get(f"/v1/llm/model-endpoints/{name}").json()["spec"]["status_reason"]
    # The reason as the server gave it (its countdown to the next try aside).
    assert " ".join(reason.split(";")[0].split()) in stderr


def test_update_wait_follows_the_update_not_the_ready_before_it(local: Local) -> None:
    name = unique_name("upd")
    local.client.post("/v1/llm/model-endpoints", json=endpoint_body(name=name))
    wait_for(local.client, name, lambda e: e["status"] == "READY")
    change = {"checkpoint_path": str(local.roots / "missing")}
    result = local.cli("endpoints", "update", name, "-f", local.body_file(change), "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UPDATE_FAILED" in result.stderr


def test_create_wait_exits_2_when_the_timeout_passes_first(server: RunningServer) -> None:
    # The `server` fixture stores endpoints only (no backend): they stay UPDATE_PENDING.
    name = unique_name("slow")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}.json"
    path.write_text(json.dumps(endpoint_body(name=name)))
    result = run_cli(server, "endpoints", "create", "-f", str(path), "--wait", "--timeout", "1")
    path.unlink()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{name} is not READY after 1s: UPDATE_PENDING" in " ".join(result.stderr.split())
    assert run_cli(server, "endpoints", "delete", name).returncode == 0


def test_logs_follow_prints_lines_written_after_it_began_and_ends_with_the_endpoint(
    local: Local,
) -> None:
    name = unique_name("tail")
    local.client.post("/v1/llm/model-endpoints", json=endpoint_body(name=name))
    endpoint = wait_for(local.client, name, lambda e: e["status"] == "READY")
    log = local.data_dir / "logs" / f"{name}-{endpoint['id'][-8:]}" / "group-0" / "rank-0.log"
    assert log.exists()
    env = {**os.environ, "LLM_LAUNCH_URL": local.server.url, "LLM_LAUNCH_API_KEY": KEY}
    follow = subprocess.Popen([CLI, "endpoints", "logs", name, "-f", "--tail", "1"],
                              stdout=subprocess.PIPE, env=env)  # fmt: skip
    lines = _lines_of(follow)
    try:
        first = lines.get(timeout=WAIT_S)  # the last line already there: following began
        assert first
        marker = f"written after the follow began {unique_name()}"
        with log.open("a") as out:
            out.write(marker + "\n")
        assert _until(lines, marker), f"{marker!r} never printed"
        assert local.client.delete(f"/v1/llm/model-endpoints/{name}").status_code == 200
        assert follow.wait(timeout=WAIT_S) == 0  # the log went with the endpoint
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_a_follow_the_client_leaves_stops_reading_the_log_on_the_server(local: Local) -> None:
    name = unique_name("leave")
    local.client.post("/v1/llm/model-endpoints", json=endpoint_body(name=name))
    endpoint = wait_for(local.client, name, lambda e: e["status"] == "READY")
    log = local.data_dir / "logs" / f"{name}-{endpoint['id'][-8:]}" / "group-0" / "forwarder.log"
    params = {"forwarder": "true", "follow": "true", "tail": "1"}
    with local.client.stream("GET", f"/v1/llm/model-endpoints/{name}/logs", params=params) as s:
        assert s.status_code == 200
        chunks = s.iter_bytes()  # kept: a dropped iterator closes the stream
        assert next(chunks)  # following: the server has the log open
        assert _opened_by(local.server, log)
    assert _eventually(lambda: not _opened_by(local.server, log)), "the log is still read"
    assert local.client.delete(f"/v1/llm/model-endpoints/{name}").status_code == 200


def _opened_by(server: RunningServer, path: Path) -> bool:
    fds = Path(f"/proc/{server.pid}/fd")
    return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())


def _eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_list_fits_80_columns_and_prints_wide_json_and_yaml(local: Local) -> None:
    name = unique_name("wide")
    local.client.post("/v1/llm/model-endpoints", json=local.failing_body(name=name))
    endpoint = wait_for(local.client, name, lambda e: e["status"] == "UPDATE_FAILED")
    reason = endpoint["spec"]["status_reason"]
    assert len(reason) > 80

    table = local.cli("endpoints", "list")
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert "UPDATE_FAILED" in row and row.endswith("…")

    wide = local.cli("endpoints", "list", "-o", "wide").stdout
    wide_row = next(line for line in wide.splitlines() if line.startswith(name))
    # The reason whole (it goes on changing: the restart count, the next try's countdown).
    assert "…" not in wide_row and len(wide_row) > 80, wide_row
    assert "keeps failing" in wide_row and "llama-3-8b-instruct" in wide_row

    as_json = json.loads(local.cli("endpoints", "list", "-o", "json").stdout)
    assert name in [e["name"] for e in as_json]
    as_yaml = yaml.safe_load(local.cli("endpoints", "list", "-o", "yaml").stdout)
    assert name in [e["name"] for e in as_yaml]
    one = yaml.safe_load(local.cli("endpoints", "get", name, "-o", "yaml").stdout)
    assert one["status"] == "UPDATE_FAILED" and "keeps failing" in one["spec"]["status_reason"]
    assert json.loads(local.cli("endpoints", "get", name).stdout)["name"] == name
    assert name in local.cli("endpoints", "get", name, "-o", "table").stdout


def _lines_of(process: subprocess.Popen[bytes]) -> Queue[str]:
    """The process's stdout lines, read in a thread (a read never blocks the test)."""
    lines: Queue[str] = Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: Queue[str], wanted: str) -> bool:
    while True:
        try:
            if wanted in lines.get(timeout=WAIT_S):
                return True
        except Empty:
            return False
