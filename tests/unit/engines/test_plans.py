"""Launch plans: the seed case, single-node SGLang and vLLM, multi-node vLLM, extra args."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.spec_builder import build_spec
from llm_launch.engines.args import render_engine_args
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily, LaunchPlan, Ports, Role
from llm_launch.engines.planner import plan_launch
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()


def plan_for(body: dict[str, Any], **options: Any) -> LaunchPlan:
    return plan_launch(build_spec(body, CATALOG), PlanOptions(**options))


def flag(command: tuple[str, ...], name: str) -> str:
    """The value of `name`, written `name value` or `name=value`."""
    for position, item in enumerate(command):
        if item == name:
            return command[position + 1]
        if item.startswith(f"{name}="):
            return item.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def engine_command(plan: LaunchPlan, role: Role) -> tuple[str, ...]:
    role_plan = plan.leader if role is Role.LEADER else plan.worker
    assert role_plan is not None
    return role_plan.container("engine").command


class TestSeedCase:
    """The runbook's DeepSeek-R1: gpus 8, nodes_per_worker 2, num_shards 8."""

    def test_the_group_has_two_nodes_and_tensor_parallel_16(self) -> None:
        plan = plan_for(seed_body())
        assert (plan.nodes, plan.tensor_parallel_size, plan.pipeline_parallel_size) == (2, 16, 1)
        for role in (Role.LEADER, Role.WORKER):
            command = engine_command(plan, role)
            assert flag(command, "--nnodes") == "2"
            assert flag(command, "--tp-size") == "16"
            assert flag(command, "--role") == role.value

    def test_model_and_checkpoint_come_from_the_request(self) -> None:
        command = engine_command(plan_for(seed_body()), Role.LEADER)
        assert flag(command, "--model") == "deepseek-r1"
        assert flag(command, "--checkpoint-path") == (
            "s3://scale-ml/models/hf-synced-weights/deepseek-ai/DeepSeek-R1"
        )
        other = engine_command(plan_for(seed_body(model_name="kimi-k2", metadata={})), Role.LEADER)
        assert flag(other, "--model") == "kimi-k2"

    def test_engine_and_rendezvous_ports_are_the_runbooks_and_distinct(self) -> None:
        plan = plan_for(seed_body())
        command = engine_command(plan, Role.LEADER)
        assert (flag(command, "--engine-port"), flag(command, "--dist-port")) == ("5005", "5002")
        assert plan.leader.container("forwarder").ports == {"http": 5000}
        assert "http://127.0.0.1:5005" in plan.leader.container("forwarder").command

    def test_one_worker_template_serves_every_rank(self) -> None:
        command = engine_command(plan_for(seed_body(nodes_per_worker=4)), Role.WORKER)
        assert "--node-rank" not in command  # read from LWS_WORKER_INDEX at run time

    def test_every_pod_sets_the_socket_interfaces(self) -> None:
        plan = plan_for(seed_body(), socket_ifname="ens5")
        for role_plan in plan.roles:
            env = role_plan.container("engine").env
            assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ens5"

    def test_only_the_leader_has_probes_and_a_forwarder(self) -> None:
        plan = plan_for(seed_body(), startup_budget_s=2400)
        assert plan.worker is not None
        assert [c.name for c in plan.worker.containers] == ["engine"]
        assert plan.worker.container("engine").probes == ()
        startup = next(p for p in plan.leader.container("engine").probes if p.kind == "startup")
        assert startup.period_s * startup.failure_threshold == 2400
        readiness = next(
            p for p in plan.leader.container("forwarder").probes if p.kind == "readiness"
        )
        assert (readiness.path, readiness.port) == ("/readyz", 5000)
        assert plan.routes.generation_check == "/health_generate"


@pytest.mark.parametrize(
    ("family", "host"), [("auto", "auto"), ("ipv6", "::"), ("ipv4", "0.0.0.0")]
)
def test_the_forwarder_listens_on_the_pods_family(family: str, host: str) -> None:
    plan = plan_for(seed_body(), ip_family=IpFamily(family))
    assert flag(plan.leader.container("forwarder").command, "--host") == host


def test_single_node_sglang_has_no_worker_and_one_node() -> None:
    plan = plan_for(endpoint_body(inference_framework="sglang", gpus=4, num_shards=4))
    assert plan.worker is None
    command = engine_command(plan, Role.LEADER)
    assert (flag(command, "--nnodes"), flag(command, "--tp-size")) == ("1", "4")


def test_single_node_vllm_uses_the_openai_engine_api() -> None:
    plan = plan_for(endpoint_body(inference_framework="vllm", gpus=2, num_shards=2))
    assert plan.worker is None
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (2, 1)
    forwarder = plan.leader.container("forwarder").command
    assert flag(forwarder, "--engine-api") == "openai"
    assert "--ready-check-path" not in forwarder  # readiness by a one-token completion


@pytest.mark.parametrize("framework", ["vllm", "sglang"])
def test_the_engine_and_its_forwarder_serve_under_the_endpoint_s_name_not_the_model_s(
    framework: str,
) -> None:
    plan = plan_for(endpoint_body(name="team-chat", inference_framework=framework))
    assert flag(engine_command(plan, Role.LEADER), "--model") == "llama-3-8b-instruct"
    assert flag(engine_command(plan, Role.LEADER), "--served-model-name") == "team-chat"
    forwarder = plan.leader.container("forwarder").command
    assert flag(forwarder, "--served-model-name") == "team-chat"
    assert plan.served_model_name == "team-chat"


def test_multinode_vllm_is_tensor_parallel_per_node_and_pipeline_parallel_across_nodes() -> None:
    plan = plan_for(seed_body(inference_framework="vllm", metadata={}, nodes_per_worker=3))
    assert (plan.nodes, plan.tensor_parallel_size, plan.pipeline_parallel_size) == (3, 8, 3)
    assert plan.worker is not None
    command = engine_command(plan, Role.WORKER)
    assert command[1] == "vllm"
    assert (flag(command, "--tp-size"), flag(command, "--pp-size")) == ("8", "3")


def test_quantization_and_chat_template_come_from_the_request() -> None:
    template = "{% for m in messages %}{{ m.content }}\n{% endfor %}"
    body = endpoint_body(quantize="awq", chat_template_override=template)
    plan = plan_for(body)
    assert flag(engine_command(plan, Role.LEADER), "--quantization") == "awq"
    assert plan.leader.container("engine").env["LLM_LAUNCH_CHAT_TEMPLATE"] == template


class TestExtraArguments:
    AWKWARD: ClassVar[dict[str, Any]] = {
        "revision": "name with spaces",
        "json-model-override-args": {"rope_scaling": {"type": "yarn", "factor": 2.0}},
        "cuda-graph-bs-decode": [1, 2, 4],
        "enable-metrics": True,
        "disable-radix-cache": False,
        "mem_fraction_static": 0.85,
        "file-storage-path": 'it\'s "quoted" $HOME; rm -rf /',
    }

    def test_each_value_is_its_own_argv_item_and_survives_intact(self) -> None:
        argv = render_engine_args(self.AWKWARD)
        assert flag(argv, "--revision") == "name with spaces"
        assert flag(argv, "--json-model-override-args") == (
            '{"rope_scaling": {"type": "yarn", "factor": 2.0}}'
        )
        position = argv.index("--cuda-graph-bs-decode")
        assert argv[position + 1 : position + 4] == ("1", "2", "4")
        assert "--enable-metrics" in argv and "--disable-radix-cache" not in argv
        assert flag(argv, "--mem-fraction-static") == "0.85"
        assert flag(argv, "--file-storage-path") == 'it\'s "quoted" $HOME; rm -rf /'

    def test_values_that_start_with_a_dash_stay_values(self) -> None:
        assert render_engine_args({"api-key": "-secret"}) == ("--api-key=-secret",)
        assert render_engine_args({"api-key": "--"}) == ("--api-key=--",)

    def test_extra_arguments_follow_the_separator_in_the_container_command(self) -> None:
        command = engine_command(plan_for(seed_body(engine_args=self.AWKWARD)), Role.WORKER)
        assert command[command.index("--") + 1 :] == render_engine_args(self.AWKWARD)


class TestRefusals:
    @pytest.mark.parametrize(
        ("ports", "field"),
        [
            (Ports(engine=5002, rendezvous=5002), "ports"),
            (Ports(forwarder=5005), "ports"),
            (Ports(engine=70000), "ports.engine"),
        ],
    )
    def test_ports_must_be_distinct_and_valid(self, ports: Ports, field: str) -> None:
        with pytest.raises(InvalidRequest) as error:
            plan_for(seed_body(), ports=ports)
        assert field in {e.field for e in error.value.errors}

    def test_ports_are_configurable(self) -> None:
        plan = plan_for(seed_body(), ports=Ports(engine=8000, rendezvous=8001, forwarder=8080))
        command = engine_command(plan, Role.LEADER)
        assert (flag(command, "--engine-port"), flag(command, "--dist-port")) == ("8000", "8001")

    def test_a_plan_is_pure(self) -> None:
        assert plan_for(seed_body()) == plan_for(seed_body())
