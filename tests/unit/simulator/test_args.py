"""Flags: SGLang's launch flags are parsed, unknown ones kept, and bad groups refused."""

from __future__ import annotations

import pytest

from llm_launch.simulator.args import (
    ArgsError,
    DistAddr,
    SimArgs,
    parse_args,
    parse_dist_init_addr,
)
from llm_launch.simulator.server import main

RUNBOOK_WORKER = [
    "--model-path", "/models/x",
    "--served-model-name", "deepseek-r1",
    "--tp-size", "16",
    "--pp-size", "1",
    "--nnodes", "2",
    "--node-rank", "1",
    "--dist-init-addr", "[fdab:1::2]:5002",
    "--host", "::",
    "--port", "5005",
    "--trust-remote-code",
    "--dist-timeout", "600",
]  # fmt: skip


def parsed(*extra: str, base: list[str] | None = None, **env: str) -> SimArgs:
    return parse_args([*(RUNBOOK_WORKER if base is None else base), *extra], env=env)


def test_the_startup_programs_argv_parses() -> None:
    args = parsed("--quantization", "fp8", "--chat-template", "/t/chat.jinja")
    assert args.model_path == "/models/x"
    assert args.served_model_name == "deepseek-r1"
    assert (args.tp_size, args.pp_size, args.nnodes, args.node_rank) == (16, 1, 2, 1)
    assert args.dist_init_addr == DistAddr("fdab:1::2", 5002)
    assert (args.host, args.port) == ("::", 5005)
    assert args.trust_remote_code is True
    assert args.dist_timeout_s == 600
    assert args.quantization == "fp8"
    assert args.chat_template == "/t/chat.jinja"
    assert args.ignored_args == ()


def test_unknown_sglang_flags_are_kept_aside_not_refused() -> None:
    args = parsed(
        "--context-length", "8192",
        "--json-model-override-args", '{"a": 1}',
        "--enable-metrics",
        "--mem-fraction-static", "0.85",
        "--cuda-graph-bs", "1", "2", "4",
    )  # fmt: skip
    assert args.context_length == 8192
    assert args.ignored_args == (
        "--json-model-override-args", '{"a": 1}',
        "--enable-metrics",
        "--mem-fraction-static", "0.85",
        "--cuda-graph-bs", "1", "2", "4",
    )  # fmt: skip


def test_defaults_follow_sglang_and_the_served_name_defaults_to_the_model_path() -> None:
    args = parse_args(["--model-path", "/models/y"], env={})
    assert args.served_model_name == "/models/y"
    assert (args.host, args.port, args.nnodes, args.node_rank) == ("127.0.0.1", 30000, 1, 0)
    assert (args.ttft_ms, args.tpot_ms, args.heartbeat_s, args.rank_timeout_s) == (20, 5, 1, 5)
    assert args.dist_timeout_s == 600


def test_tp_is_an_alias_of_tp_size_but_other_abbreviations_are_not_taken() -> None:
    args = parse_args(["--model-path", "m", "--tp", "4", "--served-model", "x"], env={})
    assert args.tp_size == 4
    assert args.served_model_name == "m"  # `--served-model` is not `--served-model-name`
    assert args.ignored_args == ("--served-model", "x")


def test_latency_defaults_come_from_the_environment_and_flags_win() -> None:
    env = {"LLM_LAUNCH_SIM_TTFT_MS": "100", "LLM_LAUNCH_SIM_TPOT_MS": "7.5"}
    from_env = parse_args(["--model-path", "m"], env=env)
    assert (from_env.ttft_ms, from_env.tpot_ms) == (100, 7.5)
    flagged = parse_args(["--model-path", "m", "--sim-ttft-ms", "1"], env=env)
    assert (flagged.ttft_ms, flagged.tpot_ms) == (1, 7.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1:5002", DistAddr("10.0.0.1", 5002)),
        ("[fd00::1]:5002", DistAddr("fd00::1", 5002)),
        ("[::1]:1", DistAddr("::1", 1)),
        ("llm-x-0.llm-x.ns:5002", DistAddr("llm-x-0.llm-x.ns", 5002)),
    ],
)
def test_dist_init_addr_takes_host_port_or_bracketed_ipv6(value: str, expected: DistAddr) -> None:
    assert parse_dist_init_addr(value) == expected


def test_dist_init_addr_prints_back_as_given() -> None:
    assert str(DistAddr("fd00::1", 5002)) == "[fd00::1]:5002"
    assert str(DistAddr("10.0.0.1", 5002)) == "10.0.0.1:5002"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("fd00::1:5002", "must be bracketed"),
        ("[fd00::1]5002", "[IPV6]:PORT"),
        ("[not-v6]:5002", "not an IPv6 address"),
        ("10.0.0.1", "HOST:PORT"),
        (":5002", "HOST:PORT"),
        ("10.0.0.1:http", "port"),
        ("10.0.0.1:70000", "port"),
    ],
)
def test_bad_dist_init_addrs_are_refused(value: str, words: str) -> None:
    with pytest.raises(ArgsError) as caught:
        parse_dist_init_addr(value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"--tp-size": "3"}, "divisible by nnodes"),
        ({"--node-rank": "2"}, "--node-rank 2 must be in [0, 1]"),
        ({"--node-rank": "-1"}, "--node-rank -1"),
        ({"--nnodes": "0"}, "--nnodes must be >= 1"),
        ({"--dist-init-addr": "fdab:1::2:5002"}, "must be bracketed"),
        ({"--port": "5002"}, "must differ"),
        ({"--dist-timeout": "0"}, "--dist-timeout must be > 0"),
        ({"--sim-rank-timeout-s": "0.5"}, "greater than --sim-heartbeat-s"),
        ({"--sim-tpot-ms": "-1"}, "--sim-tpot-ms must be >= 0"),
        ({"--tp-size": "many"}, "invalid int value"),
    ],
)
def test_flags_that_cannot_make_a_group_are_refused(changes: dict[str, str], words: str) -> None:
    argv = list(RUNBOOK_WORKER)
    for flag, value in changes.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    with pytest.raises(ArgsError) as caught:
        parse_args(argv, env={})
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_all_problems_are_named_at_once() -> None:
    argv = [*RUNBOOK_WORKER, "--node-rank", "5", "--tp-size", "3"]
    with pytest.raises(ArgsError) as caught:
        parse_args(argv, env={})
    assert "divisible" in str(caught.value) and "--node-rank 5" in str(caught.value)


def test_multinode_needs_a_dist_init_addr() -> None:
    with pytest.raises(ArgsError, match="--dist-init-addr HOST:PORT is required"):
        parse_args(["--model-path", "m", "--nnodes", "2", "--tp-size", "2"], env={})


def test_a_missing_model_path_is_refused() -> None:
    with pytest.raises(ArgsError, match="--model-path"):
        parse_args(["--port", "1234"], env={})


def test_a_bad_latency_variable_is_refused() -> None:
    with pytest.raises(ArgsError, match="LLM_LAUNCH_SIM_TTFT_MS"):
        parse_args(["--model-path", "m"], env={"LLM_LAUNCH_SIM_TTFT_MS": "fast"})


def test_main_exits_2_with_one_line_on_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-path", "m", "--nnodes", "2", "--node-rank", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--node-rank 3 must be in [0, 1]" in err
