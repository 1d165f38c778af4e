"""`llm-launch render -f BODY.json` prints an endpoint's Kubernetes objects as YAML, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.builders import EXAMPLES, endpoint_body

CLI = str(Path(sys.executable).parent / "llm-launch")
SEED = str(EXAMPLES / "deepseek-r1-multinode.json")


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "render", *args], capture_output=True, text=True, timeout=60)


def write(tmp_path: Path, body: dict[str, object]) -> str:
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_the_runbook_body_renders_a_leaderworkerset_and_a_leader_service() -> None:
    result = render("-f", SEED, "--namespace", "inference", "--owner", "alice")
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects] == ["LeaderWorkerSet", "NetworkPolicy", "Service"]
    assert {o["metadata"]["namespace"] for o in objects} == {"inference"}
    assert objects[0]["metadata"]["labels"]["llm-launch.io/owner"] == "alice"
    assert objects[0]["spec"]["leaderWorkerTemplate"]["size"] == 2


def test_rendering_is_stable_across_runs_for_gitops() -> None:
    first, second = render("-f", SEED), render("-f", SEED)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_the_ip_family_and_image_repository_options_reach_the_objects(tmp_path: Path) -> None:
    body = write(tmp_path, endpoint_body(name="chat", min_workers=1, max_workers=3))
    result = render(
        "-f", body, "--ip-family", "ipv6", "--image-repository", "registry.example.com/vllm"
    )
    assert result.returncode == 0, result.stderr
    deployment, _policy, service, hpa = yaml.safe_load_all(result.stdout)
    assert service["spec"]["ipFamilies"] == ["IPv6"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/vllm:v0.31.0"


def test_an_invalid_body_is_refused_with_the_field_named(tmp_path: Path) -> None:
    body = json.loads(Path(SEED).read_text())
    body["endpoint_type"] = "sync"
    result = render("-f", write(tmp_path, body))
    assert result.returncode == 1
    assert "endpoint_type" in result.stderr and result.stdout == ""


def test_min_workers_0_is_refused_for_kubernetes(tmp_path: Path) -> None:
    result = render("-f", write(tmp_path, endpoint_body(min_workers=0, max_workers=2)))
    assert result.returncode == 1
    assert "min_workers" in result.stderr and "scale-to-zero" in result.stderr


def test_a_bad_owner_label_is_refused() -> None:
    result = render("-f", SEED, "--owner", "not a label")
    assert result.returncode == 1
    assert "--owner" in result.stderr
