"""The simulated `vllm serve` and `ray start` read the flags a vLLM plan gives the real ones."""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch.simulator.args import ArgsError, DistAddr
from llm_launch.simulator.ray_cli import parse_start
from llm_launch.simulator.vllm import _place, parse_vllm_args

LEADER = [
    "serve", "/models/llama", "--served-model-name", "llama", "--tensor-parallel-size", "8",
    "--host", "127.0.0.1", "--port", "5005", "--pipeline-parallel-size", "2",
    "--distributed-executor-backend", "ray",
]  # fmt: skip
RAY = {"RAY_ADDRESS": "10.0.0.1:5002"}


class TestVllmServe:
    def test_the_leaders_plan_argv_gives_the_group_shape_and_the_ray_head(self) -> None:
        args = parse_vllm_args(LEADER, RAY)
        assert (args.sim.model_path, args.sim.served_model_name) == ("/models/llama", "llama")
        assert (args.sim.tp_size, args.sim.pp_size, args.world_size) == (8, 2, 16)
        assert (args.sim.host, args.sim.port) == ("127.0.0.1", 5005)
        assert args.executor == "ray" and args.ray_head == DistAddr("10.0.0.1", 5002)

    def test_vllm_names_for_the_same_settings_are_read(self) -> None:
        args = parse_vllm_args(
            ["serve", "--model", "m", "-tp", "2", "-pp", "1", "--max-model-len", "4096",
             "-q", "fp8", "--trust-remote-code"], {},
        )  # fmt: skip
        assert (args.sim.model_path, args.sim.tp_size, args.sim.context_length) == ("m", 2, 4096)
        assert args.sim.quantization == "fp8" and args.sim.trust_remote_code
        assert args.ray_head is None  # no ray executor: one node

    def test_other_vllm_flags_are_accepted_and_ignored(self) -> None:
        args = parse_vllm_args(["serve", "m", "--max-num-seqs", "256", "--enforce-eager"], {})
        assert args.sim.ignored_args == ("--max-num-seqs", "256", "--enforce-eager")

    @pytest.mark.parametrize(
        ("argv", "env", "words"),
        [
            (["run", "m"], {}, "vllm serve MODEL"),
            (["serve"], {}, "no model"),
            (LEADER, {}, "needs RAY_ADDRESS"),
            (["serve", "m", "-tp", "0"], {}, "--tp-size must be >= 1"),
        ],
    )
    def test_what_cannot_run_is_refused_saying_why(
        self, argv: list[str], env: dict[str, str], words: str
    ) -> None:
        with pytest.raises(ArgsError, match=words):
            parse_vllm_args(argv, env)


def node(node_id: int, gpus: int = 8, alive: bool = True) -> dict[str, Any]:
    return {"node_id": node_id, "node_ip": f"10.0.0.{node_id}", "num_gpus": gpus, "alive": alive}


class TestPlacement:
    def test_the_placement_takes_live_nodes_until_their_gpus_cover_tp_times_pp(self) -> None:
        assert _place([node(0), node(1), node(2)], 16) == [0, 1]
        assert _place([node(0), node(1, alive=False), node(2)], 16) == [0, 2]

    def test_too_few_live_gpus_place_nothing(self) -> None:
        assert _place([node(0)], 16) is None
        assert _place([node(0), node(1, alive=False)], 16) is None


class TestRayStart:
    def test_a_worker_node_joins_the_head_with_the_plans_gpus_per_node(self) -> None:
        argv = ["--address", "[fd00::1]:5002", "--node-ip-address", "fd00::2", "--block",
                "--disable-usage-stats"]  # fmt: skip
        start = parse_start(argv, {"LLM_LAUNCH_SIM_NUM_GPUS": "8"})
        assert start.address == DistAddr("fd00::1", 5002) and not start.head
        assert (start.node_ip, start.num_gpus, start.block) == ("fd00::2", 8, True)

    def test_the_head_listens_on_its_port_and_num_gpus_wins_over_the_environment(self) -> None:
        argv = ["--head", "--port", "5002", "--node-ip-address", "10.0.0.1", "--num-gpus", "4"]
        start = parse_start(argv, {"LLM_LAUNCH_SIM_NUM_GPUS": "8"})
        assert (start.head, start.port, start.num_gpus) == (True, 5002, 4)

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["--block"], "either --head or --address"),
            (["--head", "--address", "a:1"], "either --head or --address"),
            (["--address", "a:1"], "--block only"),
        ],
    )
    def test_what_cannot_run_is_refused_saying_why(self, argv: list[str], words: str) -> None:
        with pytest.raises(ArgsError, match=words):
            parse_start(argv, {})
