"""The allow-listed environment of spawned processes, and the --pass-env patterns."""

from __future__ import annotations

from llm_launch.backends.local.environment import (
    child_environment,
    parse_pass_env,
    pass_env_errors,
)
from llm_launch.simulator.args import (
    ENV_PREFILL_US,
    ENV_PREFIX_CACHE_TOKENS,
    ENV_TPOT_MS,
    ENV_TTFT_MS,
)
from llm_launch.simulator.ray_cli import SIM_GPUS_ENV

SERVER = {
    "PATH": "/usr/bin",
    "LC_ALL": "C.UTF-8",
    "NCCL_SOCKET_IFNAME": "eth0",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "VLLM_API_KEY": "engine-key",
    "LLM_LAUNCH_API_KEYS": "alice:k",
    "LLM_LAUNCH_DATABASE_URL": "postgresql://u:pw@db/x",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "HF_TOKEN": "hf",
    "LWS_WORKER_INDEX": "3",
    "UNRELATED": "x",
}


def test_only_basics_and_engine_settings_pass_without_pass_env() -> None:
    assert child_environment(SERVER, ()) == {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "NCCL_SOCKET_IFNAME": "eth0",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }


def test_pass_env_adds_the_named_credentials_but_never_the_servers_own() -> None:
    passed = child_environment(SERVER, parse_pass_env("AWS_*, HF_TOKEN,VLLM_API_KEY"))
    assert passed["AWS_SECRET_ACCESS_KEY"] == "aws" and passed["HF_TOKEN"] == "hf"
    assert passed["VLLM_API_KEY"] == "engine-key"
    assert "LLM_LAUNCH_API_KEYS" not in child_environment(SERVER, ("LLM_LAUNCH_API_KEYS",))


def test_pass_env_patterns_reaching_the_servers_secrets_are_refused() -> None:
    assert pass_env_errors(("AWS_*", "HF_TOKEN")) == []
    refused = pass_env_errors(("LLM_LAUNCH_*", "*", "A*B", "X=1"))
    assert len(refused) == 4
    assert "LLM_LAUNCH_API_KEYS" in refused[0]


def test_every_setting_the_simulator_reads_from_the_environment_reaches_its_processes() -> None:
    # Two are named ..._PER_TOKEN and ..._TOKENS: settings, not credentials.
    settings = (ENV_TTFT_MS, ENV_TPOT_MS, ENV_PREFILL_US, ENV_PREFIX_CACHE_TOKENS, SIM_GPUS_ENV)
    passed = child_environment({**SERVER, **{name: "7" for name in settings}}, ())
    assert {name: passed.get(name) for name in settings} == {name: "7" for name in settings}


def test_a_credential_named_like_a_simulator_setting_still_needs_pass_env() -> None:
    server = {**SERVER, "LLM_LAUNCH_SIM_HF_TOKEN": "hf"}
    assert "LLM_LAUNCH_SIM_HF_TOKEN" not in child_environment(server, ())
