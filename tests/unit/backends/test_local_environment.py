"""The allow-listed environment of spawned processes, and the --pass-env patterns."""

from __future__ import annotations

from llm_launch.backends.local.environment import (
    child_environment,
    parse_pass_env,
    pass_env_errors,
)

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
