"""Inference frameworks we deploy, and what each accepts (quantization, reserved flags)."""

from __future__ import annotations

from enum import StrEnum


class InferenceFramework(StrEnum):
    SGLANG = "sglang"
    VLLM = "vllm"


# Frameworks Launch knows but llm-launch does not deploy; named so the error can say so.
KNOWN_UNSUPPORTED_FRAMEWORKS = frozenset(
    {"deepspeed", "text_generation_inference", "lightllm", "tensorrt_llm"}
)

MULTINODE_FRAMEWORKS = frozenset({InferenceFramework.SGLANG, InferenceFramework.VLLM})

# `--quantization` values each engine accepts (sglang 0.5.x, vLLM 0.11.x).
SUPPORTED_QUANTIZATIONS: dict[InferenceFramework, frozenset[str]] = {
    InferenceFramework.SGLANG: frozenset(
        {
            "awq",
            "awq_marlin",
            "bitsandbytes",
            "compressed-tensors",
            "fp8",
            "gptq",
            "gptq_marlin",
            "modelopt_fp4",
            "w8a8_fp8",
            "w8a8_int8",
        }
    ),
    InferenceFramework.VLLM: frozenset(
        {
            "awq",
            "awq_marlin",
            "bitsandbytes",
            "compressed-tensors",
            "fp8",
            "gguf",
            "gptq",
            "gptq_marlin",
            "marlin",
        }
    ),
}

# Flags llm-launch sets itself from the request or the launch plan; an `engine_args`
# entry may not override them, because a clash would break the group (ports, ranks)
# or contradict a field the API already has (quantize, chat_template_override).
RESERVED_ENGINE_ARGS: dict[InferenceFramework, frozenset[str]] = {
    InferenceFramework.SGLANG: frozenset(
        {
            "model-path",
            "model",
            "host",
            "port",
            "nnodes",
            "node-rank",
            "dist-init-addr",
            "nccl-init-addr",  # SGLang's alias of --dist-init-addr
            "tp-size",
            "tp",
            "tensor-parallel-size",
            "pp-size",
            "pipeline-parallel-size",
            "quantization",
            "chat-template",
            "served-model-name",
            "api-key",  # the engine would refuse the forwarder, which fronts it with its own token
            "config",  # a YAML file of flags: it could set every flag above
        }
    ),
    InferenceFramework.VLLM: frozenset(
        {
            "model",
            "host",
            "port",
            "tensor-parallel-size",
            "tp",
            "pipeline-parallel-size",
            "pp",
            "distributed-executor-backend",
            "quantization",
            "chat-template",
            "served-model-name",
            "config",  # vLLM too reads flags from a YAML file
        }
    ),
}


def flag_name(key: str) -> str:
    """The command-line spelling of an engine argument key (`mem_fraction` -> `mem-fraction`).

    The renderer (engines/args.py) writes `--` + this, and validation checks exactly this
    spelling; validation also refuses keys this would change beyond dashes and underscores.
    """
    return key.lstrip("-").replace("_", "-")
