"""`llm-launch plan -f BODY.json` prints the launch plan without a server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.builders import EXAMPLES, seed_body

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


# --- plan and render refuse exactly the bodies the API refuses (issue 11 item 6) -------

REFUSED_BODIES = {
    "misspelt-field": seed_body(min_wrokers=3),
    "tp-size-8-on-the-seed": seed_body(tp_size=8),  # the seed's 2 x 8 GPUs compute 16
}


def _flat(text: str) -> str:
    """Text with its whitespace runs as single spaces (the terminal may wrap stderr)."""
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["plan", "render"])
@pytest.mark.parametrize("case", sorted(REFUSED_BODIES))
def test_plan_and_render_refuse_what_the_api_refuses_with_the_same_messages(
    alice: httpx.Client, tmp_path: Path, command: str, case: str
) -> None:
    body = REFUSED_BODIES[case]
    answer = alice.post("/v1/llm/model-endpoints", json=body)
    assert answer.status_code == 422, answer.text
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    result = subprocess.run(
        [CLI, command, "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (1, "")
    said = _flat(result.stderr)
    for error in answer.json()["errors"]:
        assert _flat(f"{error['field']}: {error['message']}") in said, (error, said)


def test_the_seed_with_launchs_derived_fields_equal_to_the_plans_still_plans(
    tmp_path: Path,
) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps(seed_body(tp_size=16, nnodes=2, mem_fraction_static=0.85)))
    result = subprocess.run(
        [CLI, "plan", "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["tensor_parallel_size"] == 16
    assert "--mem-fraction-static=0.85" in plan["extra_engine_args"]
