"""A hung leader is restarted and a leaving group drains (issue 9 items 7 and 8), as rendered.

- The leader engine's livenessProbe is a real generation check (SGLang `/health_generate`
  on the engine port; vLLM the forwarder's `/livez`), failing for the plan's
  `hang_restart_s` before the kubelet restarts it ("Configure Liveness, Readiness and
  Startup Probes": restart after failureThreshold consecutive failures, every
  periodSeconds), which under RecreateGroupOnPodRestart recreates the group.
- Every container has an exec preStop hook: the forwarder drains, the engines (leader and
  workers) wait until it has drained; terminationGracePeriodSeconds exceeds the drain
  grace, since the countdown starts before the hooks ("Container Lifecycle Hooks").
- The HPA's scale-down is stabilised ("Configurable scaling behavior").
Each rendered object is validated against the official schemas and the LWS CRD.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch.backends.kubernetes.render import render_endpoint
from llm_launch.engines.common import ENGINE_STOP_S
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily
from tests.builders import seed_body
from tests.unit.kubernetes import (
    Manifest,
    a_config,
    an_endpoint,
    by_kind,
    single_node_vllm,
)
from tests.unit.kubernetes.test_render_schemas import (
    K8S_VERSIONS,
    crd_errors,
    kubernetes_errors,
)


def render(body: dict[str, Any], **options: Any) -> dict[str, Manifest]:
    config = a_config(plan_options=PlanOptions(**options)) if options else a_config()
    return by_kind(render_endpoint(an_endpoint(body), config))


def templates(objects: dict[str, Manifest]) -> dict[str, Manifest]:
    if "LeaderWorkerSet" in objects:
        lwt = objects["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
        return {"leader": lwt["leaderTemplate"], "worker": lwt["workerTemplate"]}
    return {"leader": objects["Deployment"]["spec"]["template"]}


def containers(template: Manifest) -> dict[str, Manifest]:
    return {c["name"]: c for c in template["spec"]["containers"]}


def pre_stop(container: Manifest) -> list[str]:
    command: list[str] = container["lifecycle"]["preStop"]["exec"]["command"]
    return command


def restart_after_s(probe: Manifest) -> int:
    seconds: int = probe["periodSeconds"] * probe["failureThreshold"]
    return seconds


def test_the_sglang_leader_engine_is_restarted_after_failing_a_generation_for_the_setting() -> None:
    engine = containers(templates(render(seed_body(), hang_restart_s=30))["leader"])["engine"]
    liveness = engine["livenessProbe"]
    assert liveness["httpGet"] == {"path": "/health_generate", "port": 5005}
    assert restart_after_s(liveness) == 30
    assert liveness["timeoutSeconds"] <= liveness["periodSeconds"]
    # The startup probe gates liveness, so a loading engine is never restarted by it.
    assert engine["startupProbe"]["httpGet"]["path"] == "/health"


def test_the_vllm_leader_engine_is_restarted_when_the_forwarders_generation_check_fails() -> None:
    engine = containers(templates(render(single_node_vllm(), hang_restart_s=45))["leader"])[
        "engine"
    ]
    liveness = engine["livenessProbe"]
    assert liveness["httpGet"] == {"path": "/livez", "port": 5000}
    assert restart_after_s(liveness) == 50  # 45 s, rounded up to whole probe periods


def test_a_short_hang_setting_probes_more_often_so_the_restart_comes_in_time() -> None:
    engine = containers(templates(render(seed_body(), hang_restart_s=4))["leader"])["engine"]
    assert restart_after_s(engine["livenessProbe"]) == 4


def test_the_forwarder_drains_with_its_token_and_the_leader_engine_waits_for_it() -> None:
    leader = containers(templates(render(seed_body(), drain_grace_s=75))["leader"])
    forwarder = pre_stop(leader["forwarder"])
    assert forwarder[:2] == ["llm-launch-forwarder", "drain"]
    assert forwarder[2:] == ["--url", "http://127.0.0.1:5000", "--grace-s", "75"]
    # The token is in the forwarder container's environment (the hook's too), by reference.
    env = {e["name"]: e for e in leader["forwarder"]["env"]}
    assert "secretKeyRef" in env["LLM_LAUNCH_FORWARDER_TOKEN"]["valueFrom"]
    engine = pre_stop(leader["engine"])
    assert engine == [
        "llm-launch-forwarder", "wait-drained", "--url", "http://127.0.0.1:5000",
        "--grace-s", "75",
    ]  # fmt: skip


def test_workers_stop_only_after_their_leaders_forwarder_has_drained() -> None:
    worker = containers(templates(render(seed_body()))["worker"])["engine"]
    assert pre_stop(worker) == [
        "llm-launch-forwarder", "wait-drained", "--leader-port", "5000", "--grace-s", "90",
    ]  # fmt: skip


def test_the_drain_hooks_reach_the_forwarder_on_ipv6_loopback_on_an_ipv6_cluster() -> None:
    leader = containers(templates(render(seed_body(), ip_family=IpFamily.IPV6))["leader"])
    assert "http://[::1]:5000" in pre_stop(leader["forwarder"])
    assert "http://[::1]:5000" in pre_stop(leader["engine"])


@pytest.mark.parametrize("body", [seed_body(), single_node_vllm()], ids=["lws", "deployment"])
def test_the_pods_grace_period_covers_the_drain_and_then_the_engines_stop(
    body: dict[str, Any],
) -> None:
    for template in templates(render(body, drain_grace_s=600)).values():
        assert template["spec"]["terminationGracePeriodSeconds"] == 600 + ENGINE_STOP_S
    for template in templates(render(body)).values():
        assert template["spec"]["terminationGracePeriodSeconds"] > 90


def test_the_autoscalers_scale_down_is_stabilised_and_removes_one_group_at_a_time() -> None:
    hpa = render(seed_body(min_workers=1, max_workers=4))["HorizontalPodAutoscaler"]
    scale_down = hpa["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300
    assert scale_down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert "scaleUp" not in hpa["spec"]["behavior"]  # scale-up keeps Kubernetes' defaults


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_hooks_probes_and_behavior_pass_the_official_schemas(version: str) -> None:
    for body in (seed_body(min_workers=1, max_workers=4), single_node_vllm(max_workers=3)):
        for obj in render(body, hang_restart_s=4, drain_grace_s=600).values():
            assert kubernetes_errors(obj, version) == [], obj["kind"]
            if obj["kind"] == "LeaderWorkerSet":
                assert crd_errors(obj) == []
