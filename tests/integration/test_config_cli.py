"""`llm-launch render --config FILE` and `serve --config FILE`: the file's settings reach the
rendered objects (valid under the Kubernetes schemas and the LWS CRD), flags win over it,
and a bad file stops either command with the key named, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import EXAMPLES, endpoint_body
from tests.unit.kubernetes.test_render_schemas import K8S_VERSIONS, crd_errors, kubernetes_errors

CLI = str(Path(sys.executable).parent / "llm-launch")
SEED = str(EXAMPLES / "deepseek-r1-multinode.json")
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "config.example.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for obj in objects:
        spec = obj.get("spec", {})
        templates = spec.get("leaderWorkerTemplate", {})
        for template in (spec.get("template"), *templates.values()):
            if isinstance(template, dict) and "spec" in template:
                specs.append(template["spec"])
    return specs


INSTALLATION = {
    "kubernetes": {
        "namespace": "inference",
        "image_repositories": {
            "sglang": "registry.example.com/llm/sglang",
            "vllm": "registry.example.com/llm/vllm",
        },
        "image_tags": {
            "sglang": {"multinode-latest-2": DIGEST, "v0.5.21": "v0.5.21"},
            "vllm": {"v0.31.0": "v0.31.0"},
        },
        "image_pull_policy": "Always",
        "image_pull_secrets": ["registry"],
        "service_account": "engines",
        "priority_classes": {"high": "llm-high", "default": "llm-default"},
        "shm_size": "16Gi",
        "plan_options": {"ip_family": "ipv6", "socket_ifname": "ib0"},
        "weights_volume": "pvc:model-cache",
    }
}


def test_render_with_a_config_file_shows_its_images_priority_class_and_settings(
    tmp_path: Path,
) -> None:
    result = run("render", "--config", write_config(tmp_path, INSTALLATION), "-f", SEED)
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    lws = next(o for o in objects if o["kind"] == "LeaderWorkerSet")
    assert {o["metadata"]["namespace"] for o in objects} == {"inference"}
    for pod in pod_specs([lws]):
        assert pod["priorityClassName"] == "llm-high"  # the seed is high_priority
        assert pod["serviceAccountName"] == "engines"
        assert pod["imagePullSecrets"] == [{"name": "registry"}]
        (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
        assert shm["emptyDir"]["sizeLimit"] == "16Gi"
        for container in pod["containers"]:
            assert container["image"] == "registry.example.com/llm/sglang:v0.5.21"
            assert container["imagePullPolicy"] == "Always"
        engine = next(c for c in pod["containers"] if c["name"] == "engine")
        env = {e["name"]: e.get("value") for e in engine["env"]}
        assert env["NCCL_SOCKET_IFNAME"] == "ib0"
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["ipFamilies"] == ["IPv6"]
    for obj in objects:
        for version in K8S_VERSIONS:
            assert kubernetes_errors(obj, version) == []
    assert crd_errors(lws) == []


def test_a_tag_mapped_to_a_digest_renders_the_image_by_digest(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    seed = json.loads(Path(SEED).read_text())
    seed["inference_framework_image_tag"] = "multinode-latest-2"
    seed["metadata"]["_llm"]["inference_framework_image_tag"] = "multinode-latest-2"
    body.write_text(json.dumps(seed))
    result = run("render", "--config", write_config(tmp_path, INSTALLATION), "-f", str(body))
    assert result.returncode == 0, result.stderr
    images = {
        c["image"]
        for p in pod_specs(list(yaml.safe_load_all(result.stdout)))
        for c in p["containers"]
    }
    assert images == {f"registry.example.com/llm/sglang@{DIGEST}"}


def test_a_tag_the_installation_does_not_offer_is_refused_naming_the_offered_tags(
    tmp_path: Path,
) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps(endpoint_body(inference_framework_image_tag="v0.11.0")))
    result = run("render", "-f", str(body))
    assert result.returncode == 1
    assert "inference_framework_image_tag" in result.stderr and "v0.31.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_and_the_environment_variable_win_over_or_name_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, INSTALLATION)
    result = run("render", "-f", SEED, "--namespace", "other", env={"LLM_LAUNCH_CONFIG": config})
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert {o["metadata"]["namespace"] for o in objects} == {"other"}
    assert pod_specs(objects)[0]["priorityClassName"] == "llm-high"  # the rest: the file's


def test_the_example_configuration_loads_and_renders_valid_objects() -> None:
    result = run("render", "--config", str(EXAMPLE), "-f", SEED)
    assert result.returncode == 0, result.stderr
    for obj in yaml.safe_load_all(result.stdout):
        assert kubernetes_errors(obj, K8S_VERSIONS[-1]) == []


@pytest.mark.parametrize("command", ["render", "serve"])
def test_a_bad_file_stops_the_command_naming_the_key_without_a_traceback(
    tmp_path: Path, command: str
) -> None:
    config = write_config(tmp_path, {"kubernetes": {"image_pull_polcy": "Always"}})
    args = ["-f", SEED] if command == "render" else ["--backend", "kubernetes"]
    result = run(command, "--config", config, *args, env={"LLM_LAUNCH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "kubernetes.image_pull_polcy: unknown key" in result.stderr
    assert "image_pull_policy" in result.stderr
    assert "Traceback" not in result.stderr
