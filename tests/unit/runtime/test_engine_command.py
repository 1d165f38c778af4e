"""The engine argv the startup program builds, and the groups it refuses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llm_launch.engines.plan import IpFamily
from llm_launch.runtime.startup.engine_command import (
    EngineRequest,
    ResolvedAddresses,
    build_engine_launch,
)
from llm_launch.runtime.startup.network import StartupError

V6 = ResolvedAddresses(own_ip="fdab:1::2", leader_ip="fdab:1::1", family=IpFamily.IPV6)
V4 = ResolvedAddresses(own_ip="10.0.0.2", leader_ip="10.0.0.1", family=IpFamily.IPV4)


def request(**overrides: Any) -> EngineRequest:
    fields: dict[str, Any] = dict(
        framework="sglang", nnodes=2, node_rank=1, tp_size=16, pp_size=1,
        engine_port=5005, dist_port=5002, served_model_name="deepseek-r1",
    )  # fmt: skip
    fields.update(overrides)
    return EngineRequest(**fields)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


class TestSGLang:
    def test_ipv6_binds_everything_and_brackets_the_rendezvous(self) -> None:
        launch = build_engine_launch(request(), V6, "/models/r1", None)
        assert flag(launch.argv, "--host") == "::"
        assert flag(launch.argv, "--dist-init-addr") == "[fdab:1::1]:5002"
        assert (flag(launch.argv, "--nnodes"), flag(launch.argv, "--node-rank")) == ("2", "1")

    def test_ipv4_uses_a_plain_host_port(self) -> None:
        launch = build_engine_launch(request(), V4, "/models/r1", None)
        assert flag(launch.argv, "--host") == "0.0.0.0"
        assert flag(launch.argv, "--dist-init-addr") == "10.0.0.1:5002"

    def test_sglang_host_ip_is_the_leaders_on_the_leader_and_its_own_on_a_worker(self) -> None:
        leader = build_engine_launch(request(node_rank=0), V6, "m", None)
        worker = build_engine_launch(request(node_rank=1), V6, "m", None)
        assert leader.env["SGLANG_HOST_IP"] == "fdab:1::1"
        assert worker.env["SGLANG_HOST_IP"] == "fdab:1::2"

    def test_single_node_has_no_rendezvous_flags(self) -> None:
        single = ResolvedAddresses(own_ip="10.0.0.2", leader_ip=None, family=IpFamily.IPV4)
        launch = build_engine_launch(request(nnodes=1, node_rank=0, tp_size=4), single, "m", None)
        assert "--dist-init-addr" not in launch.argv and "--nnodes" not in launch.argv
        assert launch.env["SGLANG_HOST_IP"] == "10.0.0.2"

    def test_extra_args_come_last_unchanged(self) -> None:
        extra = ("--context-length", "8192", "--json-model-override-args", '{"a": "b c"}')
        launch = build_engine_launch(request(extra_args=extra), V4, "m", "/models/t.jinja")
        assert launch.argv[-4:] == extra
        assert flag(launch.argv, "--chat-template") == "/models/t.jinja"

    def test_a_bind_host_override_wins(self) -> None:
        launch = build_engine_launch(request(bind_host="127.0.0.1"), V6, "m", None)
        assert flag(launch.argv, "--host") == "127.0.0.1"

    def test_the_simulated_engine_gets_the_same_flags(self) -> None:
        real = build_engine_launch(request(), V6, "m", None)
        simulated = build_engine_launch(request(engine_mode="simulated"), V6, "m", None)
        assert simulated.argv[1:3] == ("-m", "llm_launch.simulator")
        assert simulated.argv[3:] == real.argv[3:]


class TestVLLM:
    def test_the_leader_starts_a_ray_head_awaits_all_nodes_and_serves(self) -> None:
        launch = build_engine_launch(
            request(framework="vllm", node_rank=0, tp_size=8, pp_size=2), V6, "/m", None
        )
        assert launch.before[0][:3] == ("ray", "start", "--head")
        assert launch.await_ray_nodes == 2
        assert launch.argv[:3] == ("vllm", "serve", "/m")
        assert flag(launch.argv, "--tensor-parallel-size") == "8"
        assert flag(launch.argv, "--pipeline-parallel-size") == "2"
        assert flag(launch.argv, "--distributed-executor-backend") == "ray"
        assert flag(launch.argv, "--port") == "5005"

    def test_a_worker_joins_the_leaders_ray_head_and_blocks(self) -> None:
        launch = build_engine_launch(
            request(framework="vllm", tp_size=8, pp_size=2), V6, "/m", None
        )
        assert launch.argv[:2] == ("ray", "start")
        assert flag(launch.argv, "--address") == "[fdab:1::1]:5002"
        assert "--block" in launch.argv
        assert launch.env["VLLM_HOST_IP"] == "fdab:1::2"

    @pytest.mark.parametrize("rank", [0, 1])
    def test_a_simulated_group_runs_the_plans_own_argv_under_the_simulator(self, rank: int) -> None:
        vllm = request(framework="vllm", node_rank=rank, tp_size=8, pp_size=2)
        real = build_engine_launch(vllm, V6, "/m", None)
        simulated = build_engine_launch(replace(vllm, engine_mode="simulated"), V6, "/m", None)
        program = real.argv[0]  # "vllm" on the leader, "ray" on a worker
        assert simulated.argv[1:4] == ("-m", "llm_launch.simulator", program)
        assert simulated.argv[4:] == real.argv[1:]
        for real_step, simulated_step in zip(real.before, simulated.before, strict=True):
            assert simulated_step[3:] == ("ray", *real_step[1:])
        assert simulated.await_ray_nodes == real.await_ray_nodes

    def test_the_simulated_leader_finds_its_ray_head_and_counts_its_nodes_there(self) -> None:
        leader = request(framework="vllm", node_rank=0, tp_size=8, pp_size=2)
        launch = build_engine_launch(replace(leader, engine_mode="simulated"), V6, "/m", None)
        assert launch.env["RAY_ADDRESS"] == "[fdab:1::2]:5002"
        assert launch.ray_probe[3:] == ("ray", "status", "--address", "[fdab:1::2]:5002")
        assert launch.env["LLM_LAUNCH_SIM_NUM_GPUS"] == "8"  # tp x pp over the nodes

    def test_a_simulated_single_node_serves_with_vllm_flags(self) -> None:
        single = ResolvedAddresses(own_ip="10.0.0.2", leader_ip=None, family=IpFamily.IPV4)
        one = request(framework="vllm", nnodes=1, node_rank=0, tp_size=2, engine_mode="simulated")
        launch = build_engine_launch(one, single, "/m", None)
        assert launch.argv[3:6] == ("vllm", "serve", "/m")
        assert flag(launch.argv, "--tensor-parallel-size") == "2"
        assert not launch.before and launch.await_ray_nodes is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"engine_port": 5002}, "equals the rendezvous port"),
        ({"node_rank": 2}, "outside 0..1"),
        ({"node_rank": -1}, "outside 0..1"),
        ({"tp_size": 3}, "not divisible"),
    ],
)
def test_impossible_groups_are_refused_with_a_reason(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(StartupError, match=words):
        build_engine_launch(request(**overrides), V4, "m", None)
