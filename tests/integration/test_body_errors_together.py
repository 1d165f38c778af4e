"""A body with a type error is answered with every other problem too: the domain's rules
run on the fields that parsed, over HTTP (create and update) and in `llm-launch plan`,
with the same messages, and nothing is stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.builders import endpoint_body, unique_name

CLI = str(Path(sys.executable).parent / "llm-launch")
PATH = "/v1/llm/model-endpoints"

# One type error, four broken rules elsewhere in the body.
MIXED = {
    "min_workers": "two",
    "name": "Bad_Name",
    "per_worker": 0,
    "gpu_type": "nvidia-voodoo-1",
    "labels": {"bad key": "x"},
}
EXPECTED = {"min_workers", "name", "per_worker", "gpu_type", "labels.bad key"}


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def test_a_create_with_one_type_error_names_every_broken_rule_too(alice: httpx.Client) -> None:
    answer = alice.post(PATH, json=endpoint_body(**MIXED))
    errors = fields(answer)
    assert set(errors) == EXPECTED
    assert "valid integer" in errors["min_workers"]  # its type error, not "is required"
    assert "DNS-1123" in errors["name"] and ">= 1" in errors["per_worker"]
    assert "unknown GPU type" in errors["gpu_type"]
    for field in EXPECTED:
        assert field in answer.json()["detail"]
    assert alice.get(PATH, params={"name": "Bad_Name"}).json()["model_endpoints"] == []


def test_a_rule_that_compares_a_field_with_a_type_error_is_not_reported(
    alice: httpx.Client,
) -> None:
    # max_workers 1 is below min_workers only if min_workers were more than 1; num_shards 2
    # breaks "num_shards equals gpus" only for some value of gpus: neither is known.
    body = endpoint_body(min_workers="two", max_workers=1, gpus="two", num_shards=2)
    assert set(fields(alice.post(PATH, json=body))) == {"min_workers", "gpus"}
    # A required field with a type error is that error alone, never also "is required".
    errors = fields(alice.post(PATH, json=endpoint_body(name=7, per_worker=0)))
    assert set(errors) == {"name", "per_worker"}
    assert "required" not in errors["name"]


def test_an_update_with_one_type_error_names_every_broken_rule_too(alice: httpx.Client) -> None:
    name = unique_name("mixed")
    assert alice.post(PATH, json=endpoint_body(name=name)).status_code == 200
    before = alice.get(f"{PATH}/{name}").json()
    changes: dict[str, Any] = {"max_workers": "many", "per_worker": 0, "labels": {"bad key": "x"}}
    errors = fields(alice.put(f"{PATH}/{name}", json=changes))
    assert set(errors) == {"max_workers", "per_worker", "labels.bad key"}
    assert alice.get(f"{PATH}/{name}").json() == before
    assert alice.delete(f"{PATH}/{name}").status_code == 200


def test_plan_names_the_same_errors_as_the_api(alice: httpx.Client, tmp_path: Path) -> None:
    body = endpoint_body(**MIXED)
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    result = subprocess.run(
        [CLI, "plan", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "1000", "PATH": ""},
    )
    assert result.returncode == 1
    printed = " ".join(result.stderr.split())
    api_errors = fields(alice.post(PATH, json=body))
    assert set(api_errors) == EXPECTED
    for field, message in api_errors.items():
        assert f"{field}: {' '.join(message.split())}" in printed
