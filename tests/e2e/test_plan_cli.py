"""`llm-launch plan -f BODY.json` prints the launch plan without a server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.builders import EXAMPLES

CLI = str(Path(sys.executable).parent / "llm-launch")


def test_the_runbook_body_plans_a_two_node_group_as_json() -> None:
    body = str(EXAMPLES / "deepseek-r1-multinode.json")
    result = subprocess.run(
        [CLI, "plan", "-f", body, "--socket-ifname", "ens5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["nodes"], plan["tensor_parallel_size"]) == (2, 16)
    assert [c["name"] for c in plan["leader"]["containers"]] == ["engine", "forwarder"]
    assert plan["worker"]["containers"][0]["env"]["NCCL_SOCKET_IFNAME"] == "ens5"
    assert plan["ports"] == {"engine": 5005, "rendezvous": 5002, "forwarder": 5000}


def test_an_invalid_body_is_refused_with_the_field_named(tmp_path: Path) -> None:
    body = json.loads((EXAMPLES / "deepseek-r1-multinode.json").read_text())
    body["endpoint_type"] = "sync"
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    result = subprocess.run(
        [CLI, "plan", "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "endpoint_type" in result.stderr and "streaming" in result.stderr
