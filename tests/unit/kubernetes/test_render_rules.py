"""The rules of the Kubernetes rendering, one behaviour at a time."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from llm_launch.backends.kubernetes.config import KubernetesConfigError, PriorityClasses
from llm_launch.backends.kubernetes.render import (
    LABEL_ENDPOINT,
    LABEL_ENDPOINT_ID,
    LABEL_OWNER,
    LABEL_ROLE,
    EndpointIdentity,
    check_supported,
    render_endpoint,
    render_spec,
    service_name,
    service_url,
)
from llm_launch.config.loader import parse_hardware_catalog
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.spec_builder import build_spec
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily
from llm_launch.engines.planner import plan_launch
from tests.builders import seed_body
from tests.unit.kubernetes import (
    CATALOG,
    ENDPOINT_ID,
    OWNER,
    Manifest,
    a_config,
    an_endpoint,
    by_kind,
    k8s_name,
    multinode_vllm,
    rendered,
    single_node_sglang,
    single_node_vllm,
)

LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]$")


def lws(body: dict[str, Any] | None = None, **config: Any) -> Manifest:
    return by_kind(rendered(body or seed_body(), **config))["LeaderWorkerSet"]


def deployment(body: dict[str, Any] | None = None, **config: Any) -> Manifest:
    return by_kind(rendered(body or single_node_vllm(), **config))["Deployment"]


def leader(obj: Manifest) -> Manifest:
    return obj["spec"]["leaderWorkerTemplate"]["leaderTemplate"]


def worker(obj: Manifest) -> Manifest:
    return obj["spec"]["leaderWorkerTemplate"]["workerTemplate"]


def containers(template: Manifest) -> dict[str, Manifest]:
    return {c["name"]: c for c in template["spec"]["containers"]}


def env_of(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def all_templates(body: dict[str, Any]) -> list[Manifest]:
    objects = by_kind(rendered(body))
    if "LeaderWorkerSet" in objects:
        return [leader(objects["LeaderWorkerSet"]), worker(objects["LeaderWorkerSet"])]
    return [objects["Deployment"]["spec"]["template"]]


class TestTheLeaderWorkerSet:
    def test_replicas_are_min_workers_and_size_is_nodes_per_worker(self) -> None:
        obj = lws(seed_body(min_workers=3, max_workers=3))
        assert obj["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
        assert obj["spec"]["replicas"] == 3
        assert obj["spec"]["leaderWorkerTemplate"]["size"] == 2

    def test_group_policies_come_from_the_config(self) -> None:
        obj = lws(restart_policy="RecreateGroupAfterStart", max_unavailable="25%", max_surge=1)
        assert obj["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupAfterStart"
        assert obj["spec"]["startupPolicy"] == "LeaderCreated"
        assert obj["spec"]["rolloutStrategy"] == {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxUnavailable": "25%", "maxSurge": 1},
        }

    def test_the_defaults_recreate_the_group_and_replace_one_group_at_a_time(self) -> None:
        spec = lws()["spec"]
        assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
        assert spec["rolloutStrategy"]["rollingUpdateConfiguration"] == {
            "maxUnavailable": 1,
            "maxSurge": 0,
        }

    def test_leader_ready_startup_is_refused_because_the_leader_waits_for_workers(self) -> None:
        with pytest.raises(KubernetesConfigError, match="LeaderCreated"):
            a_config(startup_policy="LeaderReady")

    def test_a_rollout_that_can_never_start_is_refused(self) -> None:
        with pytest.raises(KubernetesConfigError, match="both be 0"):
            a_config(max_unavailable=0, max_surge="0%")

    def test_the_leader_runs_rank_0_and_the_forwarder_and_workers_the_worker_plan(self) -> None:
        body = seed_body()
        plan = plan_launch(build_spec(body, CATALOG), PlanOptions())
        assert plan.worker is not None
        obj = lws(body)
        assert list(containers(leader(obj))) == ["engine", "forwarder"]
        assert list(containers(worker(obj))) == ["engine"]
        assert containers(leader(obj))["engine"]["command"] == list(
            plan.leader.container("engine").command
        )
        assert containers(leader(obj))["forwarder"]["command"] == list(
            plan.leader.container("forwarder").command
        )
        assert containers(worker(obj))["engine"]["command"] == list(
            plan.worker.container("engine").command
        )

    def test_multinode_vllm_is_a_leaderworkerset_too(self) -> None:
        obj = lws(multinode_vllm())
        assert obj["spec"]["leaderWorkerTemplate"]["size"] == 2
        assert "vllm" in containers(worker(obj))["engine"]["command"]


class TestEnvironment:
    @pytest.mark.parametrize("body", [seed_body(), multinode_vllm()], ids=["sglang", "vllm"])
    def test_every_container_of_a_group_learns_its_pod_and_the_lws_name(
        self, body: dict[str, Any]
    ) -> None:
        for template in all_templates(body):
            for container in template["spec"]["containers"]:
                env = env_of(container)
                assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
                assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
                assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
                assert env["LWS_NAME"] == {
                    "fieldRef": {"fieldPath": f"metadata.labels['{LWS_NAME_LABEL}']"}
                }

    def test_single_node_pods_have_the_pod_env_but_no_lws_name(self) -> None:
        for container in deployment()["spec"]["template"]["spec"]["containers"]:
            env = env_of(container)
            assert "POD_IP" in env and "LWS_NAME" not in env

    def test_the_plans_env_reaches_leader_and_workers(self) -> None:
        obj = lws(plan_options=PlanOptions(socket_ifname="ens5"))
        for template in (leader(obj), worker(obj)):
            env = env_of(containers(template)["engine"])
            assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ens5"
            assert env["LLM_LAUNCH_ENDPOINT_NAME"] == "deepseek-r1"

    def test_no_env_name_appears_twice(self) -> None:
        for template in all_templates(seed_body()):
            for container in template["spec"]["containers"]:
                names = [e["name"] for e in container["env"]]
                assert len(names) == len(set(names))


class TestResources:
    def test_the_engine_gets_gpus_cpu_memory_and_storage_as_equal_requests_and_limits(
        self,
    ) -> None:
        for template in (leader(lws()), worker(lws())):
            resources = containers(template)["engine"]["resources"]
            expected = {"cpu": "160", "memory": "800Gi", "ephemeral-storage": "900Gi"}
            assert resources["requests"] == {**expected, "nvidia.com/gpu": "8"}
            assert resources["limits"] == resources["requests"]  # GPUs require it

    def test_the_forwarder_gets_its_own_small_share_and_no_gpu(self) -> None:
        resources = containers(leader(lws(forwarder_cpu="500m")))["forwarder"]["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "500m", "memory": "1Gi"}

    def test_a_cpu_only_endpoint_asks_for_no_gpu_and_selects_no_gpu_nodes(self) -> None:
        body = single_node_vllm(gpus=0, gpu_type=None, num_shards=1, storage=None)
        pod = deployment(body)["spec"]["template"]["spec"]
        resources = containers({"spec": pod})["engine"]["resources"]
        assert resources["limits"] == {"cpu": "8", "memory": "32Gi"}
        assert "nodeSelector" not in pod and "tolerations" not in pod

    def test_the_gpu_resource_name_is_configurable(self) -> None:
        limits = containers(leader(lws(gpu_resource="amd.com/gpu")))["engine"]["resources"]
        assert limits["limits"]["amd.com/gpu"] == "8"
        assert "nvidia.com/gpu" not in limits["limits"]

    @pytest.mark.parametrize(
        ("gpu_type", "resource"),
        [
            ("nvidia-hopper-h100-1g20gb", "nvidia.com/mig-1g.20gb"),
            ("nvidia-hopper-h100-3g40gb", "nvidia.com/mig-3g.40gb"),
        ],
    )
    def test_a_mig_endpoint_asks_for_its_slice_and_no_whole_gpu(
        self, gpu_type: str, resource: str
    ) -> None:
        pod = deployment(single_node_vllm(gpu_type=gpu_type))["spec"]["template"]["spec"]
        resources = containers({"spec": pod})["engine"]["resources"]
        assert resources["requests"][resource] == resources["limits"][resource] == "1"
        # The device plugin's mixed strategy: asking for both kinds is undefined.
        assert "nvidia.com/gpu" not in resources["limits"]
        assert pod["nodeSelector"] == {"k8s.amazonaws.com/accelerator": gpu_type}

    def test_a_catalog_resource_wins_over_the_installation_s_gpu_resource(self) -> None:
        gpu = dataclasses.replace(CATALOG.gpu_types["nvidia-ampere-a10"], resource="x.io/a10")
        catalog = dataclasses.replace(CATALOG, gpu_types={**CATALOG.gpu_types, gpu.name: gpu})
        pod = deployment(catalog=catalog, gpu_resource="amd.com/gpu")["spec"]["template"]["spec"]
        limits = containers({"spec": pod})["engine"]["resources"]["limits"]
        assert limits["x.io/a10"] == "1"
        assert "amd.com/gpu" not in limits


class TestNodeSelection:
    def test_nodes_are_selected_and_tolerated_from_the_hardware_catalog(self) -> None:
        for template in (leader(lws()), worker(lws())):
            assert template["spec"]["nodeSelector"] == {
                "k8s.amazonaws.com/accelerator": "nvidia-hopper-h100"
            }
            assert template["spec"]["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ]

    def test_the_catalog_in_the_config_is_the_one_used(self) -> None:
        catalog = parse_hardware_catalog(
            {
                "gpu_types": {
                    "nvidia-hopper-h100": {
                        "gpu_memory_gib": 80,
                        "node_selector": {"gpu.example.com/model": "h100-sxm"},
                        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm"}],
                    }
                }
            }
        )
        spec = leader(lws(catalog=catalog))["spec"]
        assert spec["nodeSelector"] == {"gpu.example.com/model": "h100-sxm"}
        assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "llm"}]

    def test_a_gpu_type_missing_from_the_installations_catalog_is_refused(self) -> None:
        catalog = parse_hardware_catalog({"gpu_types": {"nvidia-tesla-t4": {"gpu_memory_gib": 16}}})
        spec = build_spec(seed_body(), CATALOG)
        errors = check_supported(spec, a_config(catalog=catalog))
        assert [e.field for e in errors] == ["gpu_type"]
        assert "nvidia-tesla-t4" in errors[0].message


class TestVolumes:
    def test_shm_is_a_memory_emptydir_on_the_engine_and_weights_live_at_weights_dir(
        self,
    ) -> None:
        obj = lws(plan_options=PlanOptions(weights_dir="/data/weights"), shm_size="32Gi")
        for template in (leader(obj), worker(obj)):
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
            assert volumes["weights"]["emptyDir"] == {"sizeLimit": "900Gi"}
            assert containers(template)["engine"]["volumeMounts"] == [
                {"name": "dshm", "mountPath": "/dev/shm"},
                {"name": "weights", "mountPath": "/data/weights"},
                {"name": "progress", "mountPath": "/run/llm-launch"},
            ]
        assert containers(leader(obj))["forwarder"]["volumeMounts"] == [
            {"name": "progress", "mountPath": "/run/llm-launch", "readOnly": True}
        ]

    def test_the_startup_report_is_shared_by_the_engine_and_the_forwarder_of_a_pod(
        self,
    ) -> None:
        obj = lws()
        for template in (leader(obj), worker(obj)):
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            assert volumes["progress"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
            for container in template["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container["env"]}
                path = env["LLM_LAUNCH_PROGRESS_FILE"]  # written by one, read by the other
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert str(PurePosixPath(path).parent) in mounts

    def test_a_failed_engine_leaves_its_last_log_lines_as_its_termination_message(
        self,
    ) -> None:
        obj = lws()
        for template in (leader(obj), worker(obj)):
            engine = containers(template)["engine"]
            assert engine["terminationMessagePolicy"] == "FallbackToLogsOnError"

    def test_shm_is_capped_at_half_the_endpoints_memory_unless_configured(self) -> None:
        def shm(**config: Any) -> str:
            body = single_node_vllm(memory="16Gi")
            pod = deployment(body, shm_size="64Gi", **config)["spec"]["template"]
            (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "dshm"]
            return str(volume["emptyDir"]["sizeLimit"])

        assert shm() == "8Gi"
        assert shm(shm_memory_fraction=1.0) == "16Gi"
        assert shm(shm_memory_fraction=0.3) == "4915Mi"


class TestImagesAndPorts:
    def test_every_container_runs_our_image_for_the_framework_at_the_request_tag(self) -> None:
        obj = lws(image_repositories={"sglang": "registry.example.com/llm/sglang"})
        for template in (leader(obj), worker(obj)):
            for container in template["spec"]["containers"]:
                assert container["image"] == "registry.example.com/llm/sglang:v0.5.21"

    def test_an_endpoint_tag_is_mapped_through_the_installations_tags_or_digests(
        self,
    ) -> None:
        digest = "sha256:" + "a" * 64
        obj = lws(image_tags={"sglang": {"v0.5.21": digest}, "vllm": {"v0.31.0": "v0.31.0"}})
        assert containers(leader(obj))["engine"]["image"] == f"ghcr.io/llm-launch/sglang@{digest}"
        aliased = lws(image_tags={"sglang": {"v0.5.21": "v0.5.21-cu129"}, "vllm": {"x": "x"}})
        assert containers(worker(aliased))["engine"]["image"].endswith("sglang:v0.5.21-cu129")

    def test_a_tag_the_installation_does_not_offer_is_refused_naming_the_offered_ones(
        self,
    ) -> None:
        body = seed_body(inference_framework_image_tag="multinode-latest-2")
        body["metadata"]["_llm"]["inference_framework_image_tag"] = "multinode-latest-2"
        spec = build_spec(body, CATALOG)
        (error,) = check_supported(spec, a_config())
        assert error.field == "inference_framework_image_tag"
        assert "'multinode-latest-2'" in error.message and "v0.5.21" in error.message

    def test_high_priority_endpoints_get_the_high_priority_class_and_others_the_default(
        self,
    ) -> None:
        classes = PriorityClasses(high="llm-high", default="llm-default")
        high = lws(priority_classes=classes)
        for template in (leader(high), worker(high)):
            assert template["spec"]["priorityClassName"] == "llm-high"
        normal = deployment(single_node_vllm(), priority_classes=classes)
        assert normal["spec"]["template"]["spec"]["priorityClassName"] == "llm-default"
        assert "priorityClassName" not in leader(lws())["spec"]

    def test_a_framework_without_an_image_is_refused(self) -> None:
        errors = check_supported(build_spec(seed_body(), CATALOG), a_config(image_repositories={}))
        assert [e.field for e in errors] == ["inference_framework"]

    def test_container_ports_are_named_from_the_plan(self) -> None:
        obj = lws()

        def ports(template: Manifest, name: str) -> dict[str, int]:
            return {p["name"]: p["containerPort"] for p in containers(template)[name]["ports"]}

        assert ports(leader(obj), "engine") == {"engine": 5005, "rendezvous": 5002}
        assert ports(leader(obj), "forwarder") == {"http": 5000}
        assert ports(worker(obj), "engine") == {"engine": 5005}
        for template in (leader(obj), worker(obj)):
            for container in template["spec"]["containers"]:
                for port in container["ports"]:
                    assert len(port["name"]) <= 15 and IANA_SVC_NAME.match(port["name"])


class TestProbes:
    def test_the_leader_engine_has_a_startup_budget_for_weights_and_a_liveness_check(
        self,
    ) -> None:
        engine = containers(leader(lws(plan_options=PlanOptions(startup_budget_s=3600))))["engine"]
        startup = engine["startupProbe"]
        assert startup["httpGet"] == {"path": "/health", "port": 5005}
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600
        # A real generation (SGLang): /health may answer while the engine is hung.
        assert engine["livenessProbe"]["httpGet"] == {"path": "/health_generate", "port": 5005}
        assert "readinessProbe" not in engine

    def test_the_default_startup_budget_is_tens_of_minutes(self) -> None:
        startup = containers(leader(lws()))["engine"]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60

    def test_the_forwarder_is_ready_on_readyz_and_alive_on_healthz(self) -> None:
        forwarder = containers(leader(lws()))["forwarder"]
        assert forwarder["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 5000}
        assert forwarder["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 5000}

    def test_workers_have_no_probe_because_their_health_route_is_a_dummy(self) -> None:
        engine = containers(worker(lws()))["engine"]
        assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(engine)

    def test_single_node_pods_are_probed_like_a_leader(self) -> None:
        pod = containers(deployment()["spec"]["template"])
        assert {"startupProbe", "livenessProbe"} <= set(pod["engine"])
        assert pod["forwarder"]["readinessProbe"]["httpGet"]["path"] == "/readyz"


class TestServices:
    def test_the_multinode_service_selects_only_leaders(self) -> None:
        objects = by_kind(rendered(seed_body()))
        selector = objects["Service"]["spec"]["selector"]
        assert selector == {
            LWS_NAME_LABEL: k8s_name("deepseek-r1"),
            "leaderworkerset.sigs.k8s.io/worker-index": "0",
            LABEL_ENDPOINT_ID: ENDPOINT_ID,
        }
        assert objects["Service"]["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}
        ]

    def test_the_multinode_service_leaves_the_lws_name_to_the_lws_headless_service(
        self,
    ) -> None:
        objects = by_kind(rendered(seed_body()))
        service, workload = objects["Service"]["metadata"], objects["LeaderWorkerSet"]["metadata"]
        assert service["name"] == k8s_name("deepseek-r1") + "-leader"
        assert service["name"] != workload["name"]

    def test_the_single_node_service_selects_the_deployments_pods(self) -> None:
        objects = by_kind(rendered(single_node_sglang()))
        service, workload = objects["Service"], objects["Deployment"]
        assert service["metadata"]["name"] == k8s_name("chat-sglang")
        assert service["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["port"] == 80
        assert service["spec"]["ports"][0]["targetPort"] == 5000

    def test_an_ipv6_installation_gets_single_stack_ipv6_services(self) -> None:
        service = by_kind(rendered(seed_body(), plan_options=PlanOptions(ip_family=IpFamily.IPV6)))
        assert service["Service"]["spec"]["ipFamilies"] == ["IPv6"]
        assert service["Service"]["spec"]["ipFamilyPolicy"] == "SingleStack"
        assert "ipFamilies" not in by_kind(rendered(seed_body()))["Service"]["spec"]

    def test_the_service_url_names_the_service(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        name = k8s_name("deepseek-r1") + "-leader"
        assert service_name(OWNER, spec) == name
        assert service_url(OWNER, spec, "inference") == f"http://{name}.inference.svc"


class TestSingleNode:
    def test_a_single_node_endpoint_is_a_deployment_with_the_leaders_pod(self) -> None:
        obj = deployment(single_node_sglang())
        assert obj["apiVersion"] == "apps/v1"
        assert obj["spec"]["replicas"] == 2
        assert list(containers(obj["spec"]["template"])) == ["engine", "forwarder"]
        assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}

    def test_a_rollout_is_not_called_stuck_while_weights_load(self) -> None:
        obj = deployment(plan_options=PlanOptions(startup_budget_s=4000))
        assert obj["spec"]["progressDeadlineSeconds"] > 4000


class TestAutoscaling:
    def test_an_autoscaled_group_gets_an_hpa_on_the_lws_scale_subresource(self) -> None:
        objects = by_kind(rendered(seed_body(min_workers=2, max_workers=6, per_worker=3)))
        hpa = objects["HorizontalPodAutoscaler"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "name": k8s_name("deepseek-r1"),
        }
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        assert hpa["spec"]["metrics"] == [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "llm_launch_requests_in_flight"},
                    "target": {"type": "AverageValue", "averageValue": "3"},
                },
            }
        ]

    def test_the_hpa_owns_replicas_so_applying_again_never_fights_it(self) -> None:
        objects = by_kind(rendered(seed_body(min_workers=2, max_workers=6)))
        assert "replicas" not in objects["LeaderWorkerSet"]["spec"]

    def test_an_autoscaled_single_node_endpoint_scales_its_deployment(self) -> None:
        objects = by_kind(rendered(single_node_vllm(min_workers=1, max_workers=4)))
        target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert target == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": k8s_name("chat-vllm"),
        }
        assert "replicas" not in objects["Deployment"]["spec"]

    def test_the_metric_name_is_configurable(self) -> None:
        objects = by_kind(
            rendered(single_node_vllm(max_workers=3), autoscaling_metric="inflight_requests")
        )
        metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]
        assert metric == {"name": "inflight_requests"}

    def test_a_fixed_size_endpoint_has_no_hpa(self) -> None:
        assert [o["kind"] for o in rendered(seed_body())] == [
            "Secret",
            "LeaderWorkerSet",
            "NetworkPolicy",
            "Service",
        ]


class TestScaleToZero:
    def test_min_workers_0_is_refused_with_the_field_and_the_fix(self) -> None:
        spec = build_spec(single_node_vllm(min_workers=0, max_workers=2), CATALOG)
        (error,) = check_supported(spec, a_config())
        assert error.field == "min_workers"
        assert "scale-to-zero" in error.message and "min_workers >= 1" in error.message

    def test_rendering_min_workers_0_raises_invalid_request(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            rendered(seed_body(min_workers=0, max_workers=3))
        assert [e.field for e in caught.value.errors] == ["min_workers"]

    def test_a_stopped_endpoint_with_no_workers_at_all_renders_zero_replicas(self) -> None:
        objects = by_kind(rendered(single_node_vllm(min_workers=0, max_workers=0)))
        assert objects["Deployment"]["spec"]["replicas"] == 0
        assert "HorizontalPodAutoscaler" not in objects

    def test_a_supported_spec_has_no_problems(self) -> None:
        assert check_supported(build_spec(seed_body(), CATALOG), a_config()) == []


class TestNamesAndLabels:
    def test_objects_are_named_llm_dash_the_endpoint_name_dash_the_owner_suffix(self) -> None:
        objects = rendered(seed_body(min_workers=1, max_workers=3))
        # Pinned: another suffix for the same owner and name would rename, hence recreate,
        # every endpoint's objects on upgrade.
        assert [o["metadata"]["name"] for o in objects] == [
            "llm-deepseek-r1-l5oyco-token",
            "llm-deepseek-r1-l5oyco",
            "llm-deepseek-r1-l5oyco",  # the NetworkPolicy
            "llm-deepseek-r1-l5oyco-leader",
            "llm-deepseek-r1-l5oyco",
        ]
        assert {o["metadata"]["namespace"] for o in objects} == {"inference"}

    def test_names_stay_put_when_the_spec_changes(self) -> None:
        before = rendered(seed_body(min_workers=1, max_workers=2))
        after = rendered(seed_body(min_workers=2, max_workers=9, per_worker=4, cpus=100))
        assert [o["metadata"]["name"] for o in before] == [o["metadata"]["name"] for o in after]

    def test_the_longest_allowed_names_fit_their_limits(self) -> None:
        multinode = seed_body(name="a" * 39, min_workers=1, max_workers=12)
        single = single_node_vllm(name="b" * 52)
        lws_name = by_kind(rendered(multinode))["LeaderWorkerSet"]["metadata"]["name"]
        assert len(lws_name) == 51 - 12 // 10
        for obj in rendered(multinode) + rendered(single):
            limit = 253 if obj["kind"] == "Secret" else 63  # a DNS subdomain, else a label
            assert len(obj["metadata"]["name"]) <= limit
            assert len(obj["metadata"]["labels"][LABEL_ENDPOINT]) <= 63

    def test_objects_and_pods_carry_endpoint_id_owner_and_the_request_labels(self) -> None:
        objects = rendered(seed_body())
        workload = by_kind(objects)["LeaderWorkerSet"]
        templates = [leader(workload), worker(workload)]
        for labels in [o["metadata"]["labels"] for o in objects] + [
            t["metadata"]["labels"] for t in templates
        ]:
            assert labels[LABEL_ENDPOINT] == "deepseek-r1"
            assert labels[LABEL_ENDPOINT_ID] == ENDPOINT_ID
            assert labels[LABEL_OWNER] == OWNER
            assert labels["team"] == "infra"
            assert labels["product"] == "inference.llm_model_zoo"
            assert labels["app.kubernetes.io/managed-by"] == "llm-launch"
        assert [t["metadata"]["labels"][LABEL_ROLE] for t in templates] == ["leader", "worker"]

    def test_our_labels_win_over_a_request_label_of_the_same_key(self) -> None:
        body = seed_body(labels={"app.kubernetes.io/managed-by": "helm"})
        assert lws(body)["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llm-launch"

    def test_the_generation_is_annotated_on_objects_but_never_rolls_pods(self) -> None:
        endpoint = an_endpoint(seed_body())
        later = dataclasses.replace(endpoint, generation=endpoint.generation + 1)
        first, second = render_endpoint(endpoint, a_config()), render_endpoint(later, a_config())
        assert first[1]["metadata"]["annotations"] == {
            "llm-launch.io/generation": "3",
            "llm-launch.io/control-plane": "default",
        }
        assert second[0]["metadata"]["annotations"]["llm-launch.io/generation"] == "4"
        assert first[1]["spec"] == second[1]["spec"]


class TestPurity:
    def test_rendering_twice_gives_equal_objects_and_changes_nothing(self) -> None:
        endpoint = an_endpoint(seed_body())
        config = a_config()
        snapshot = copy.deepcopy(endpoint.spec.to_dict())
        assert render_endpoint(endpoint, config) == render_endpoint(endpoint, config)
        assert endpoint.spec.to_dict() == snapshot

    def test_a_spec_renders_without_a_stored_endpoint(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        identity = EndpointIdentity(name=spec.name, endpoint_id=ENDPOINT_ID, owner=OWNER)
        objects = render_spec(spec, a_config(), identity)
        assert objects[0]["metadata"]["labels"][LABEL_OWNER] == OWNER
        assert "annotations" not in objects[0]["metadata"]


class TestPublicSurface:
    def test_the_render_module_exports_what_the_backend_relies_on(self) -> None:
        from llm_launch.backends.kubernetes import render

        assert {
            "render_endpoint",
            "render_spec",
            "check_supported",
            "to_yaml",
            "object_name",
            "service_name",
            "service_url",
            "pod_selector",
            "MANAGED_SELECTOR",
            "LABEL_ENDPOINT_ID",
            "ANNOTATION_GENERATION",
        } <= set(render.__all__)
        assert all(hasattr(render, name) for name in render.__all__)
