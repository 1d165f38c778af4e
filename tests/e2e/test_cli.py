"""The `llm-launch endpoints` commands against a real server, as a user would type them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.builders import EXAMPLES, unique_name
from tests.conftest import ALICE_KEY
from tests.support.server import RunningServer

# The entry point installed beside the interpreter running the tests (the project venv).
CLI = str(Path(sys.executable).parent / "llm-launch")


def run_cli(
    server: RunningServer, *args: str, key: str = ALICE_KEY
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_LAUNCH_URL": server.url, "LLM_LAUNCH_API_KEY": key, "COLUMNS": "200"}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=60)


def test_create_list_get_and_delete_the_runbook_endpoint(
    server: RunningServer, tmp_path: Path
) -> None:
    name = unique_name("r1")
    body = json.loads((EXAMPLES / "deepseek-r1-multinode.json").read_text())
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps({**body, "name": name}))

    created = run_cli(server, "endpoints", "create", "-f", str(body_file))
    assert created.returncode == 0, created.stderr
    assert "task id op_" in created.stdout

    listed = run_cli(server, "endpoints", "list", "-o", "wide")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert "sglang" in row and "UPDATE_PENDING" in row

    shown = run_cli(server, "endpoints", "get", name)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spec"]["resource_state"]["nodes_per_worker"] == 2

    deleted = run_cli(server, "endpoints", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert "its teardown continues in the background" in deleted.stdout
    assert run_cli(server, "endpoints", "get", name).returncode == 1

    assert run_cli(server, "endpoints", "create", "-f", str(body_file)).returncode == 0
    waited = run_cli(server, "endpoints", "delete", name, "--wait")
    assert waited.returncode == 0, waited.stderr
    assert f"{name} is gone; its name is free" in waited.stdout
    listed = run_cli(server, "endpoints", "list", "--include-deleting")
    assert listed.returncode == 0, listed.stderr
    assert name not in listed.stdout


def test_server_errors_reach_the_user_as_one_line_and_exit_1(
    server: RunningServer, tmp_path: Path
) -> None:
    body_file = tmp_path / "bad.json"
    body_file.write_text(json.dumps({"name": "Bad_Name"}))
    result = run_cli(server, "endpoints", "create", "-f", str(body_file))
    assert result.returncode == 1
    assert "HTTP 422" in result.stderr and "model_name" in result.stderr

    assert "HTTP 401" in run_cli(server, "endpoints", "list", key="wrong-key-000000000000").stderr


def test_an_unreadable_body_file_is_a_clear_error(server: RunningServer, tmp_path: Path) -> None:
    result = run_cli(server, "endpoints", "create", "-f", str(tmp_path / "missing.json"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr
