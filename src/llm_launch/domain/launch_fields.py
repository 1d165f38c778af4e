"""Launch's engine fields (vLLM and SGLang) and what each one means in llm-launch.

Scale's Launch takes engine settings as top-level request fields (`max_model_len`,
`mem_fraction_static`, ...; scaleapi/llm-engine `common/dtos/llms/vllm.py`, `sglang.py`),
and its official client sends the vLLM ones on every create and update, null when unset.
llm-launch's own way is `engine_args` (flag -> value); here each Launch field gets its
meaning, by one of four kinds:

- flag: a non-null value becomes `engine_args[<flag>]`, exactly as if sent there (same
  rendering, same validation; for SGLang the flag must exist in SGLang's option list, so a
  Launch field for a flag SGLang has since dropped is refused, naming the field).
- derived: llm-launch computes it (parallel sizes, node count and rank, the rendezvous
  address, the served model name); accepted when equal to what llm-launch computes,
  refused otherwise with the value it needs.
- same_as: another llm-launch field under Launch's name (`quantization` is `quantize`,
  `chat_template` is `chat_template_override`, `huggingface_repo` is `checkpoint_path`
  "hf://<repo>"); fills that field when the request left it unset, must agree when both
  are set.
- refused: a value llm-launch cannot honour (SGLang's `api_key`), with the reason.

A field of the other framework's set is refused ("is a vLLM field of Launch; this endpoint
runs sglang"). A flag set both by a Launch field and in `engine_args` (the same flag after
SGLang's alias resolution) must have the same value.

Null means absent, always. `trust_remote_code: false` is absent too: it is Launch's default,
which the official client always sends, so on create it leaves the flag off and on update
it changes nothing (an update sent by the official client must never silently turn
trust-remote-code off; to turn it off, send `engine_args {"trust-remote-code": false}` or
recreate the endpoint). On update a non-null Launch engine field sets its flag in the
endpoint's current `engine_args` and leaves the other flags as they are (an `engine_args`
sent in the update still replaces the whole map first).

The tables are here; `domain.launch_fold` applies them for `domain.spec` (build_spec,
apply_update). `api.schemas` declares the request fields from these tables, so /openapi.json
documents every one with its Launch type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from llm_launch.domain.frameworks import InferenceFramework

if TYPE_CHECKING:
    from llm_launch.domain.spec import EndpointSpec


class ValueType(StrEnum):
    """A Launch field's type, as Launch's request models declare it."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    STR_LIST = "list[str]"
    INT_LIST = "list[int]"
    OBJECT = "object"


class Kind(StrEnum):
    FLAG = "flag"
    DERIVED = "derived"
    SAME_AS = "same_as"
    REFUSED = "refused"


@dataclass(frozen=True)
class Derivation:
    """How llm-launch computes a derived field; `compute` answers None where no value may
    be sent at all, and `why` then says who sets it."""

    compute: Callable[[EndpointSpec], object | None]
    formula: str
    why: str = ""


@dataclass(frozen=True)
class LaunchField:
    name: str
    type: ValueType
    kind: Kind = Kind.FLAG
    key: str = ""  # flag: the engine_args key it becomes; default: the name, dashed
    same_as: str = ""  # same_as: the llm-launch field
    derivation: Derivation | None = None
    why: str = ""  # refused: why
    # Launch's default that its client always sends: treated as absent (trust_remote_code).
    false_is_absent: bool = False

    @property
    def engine_key(self) -> str:
        return self.key or self.name.replace("_", "-")


def _flags(type_: ValueType, names: str, **extra: Any) -> list[LaunchField]:
    return [LaunchField(name, type_, **extra) for name in names.split()]


_INT, _FLOAT, _BOOL, _STR = ValueType.INT, ValueType.FLOAT, ValueType.BOOL, ValueType.STR

_SERVED = Derivation(lambda s: s.served_model_name, "the endpoint's name")
_VLLM_TP = Derivation(lambda s: max(s.gpus, 1), "max(gpus, 1): the GPUs of one node")
_VLLM_PP = Derivation(lambda s: s.nodes_per_worker, "nodes_per_worker")
_SGLANG_TP = Derivation(
    lambda s: max(s.gpus, 1) * s.nodes_per_worker, "max(gpus, 1) x nodes_per_worker"
)
_SGLANG_PP = Derivation(lambda s: 1, "1: SGLang spans the nodes by tensor parallelism")
_NNODES = Derivation(lambda s: s.nodes_per_worker, "nodes_per_worker")
_NODE_RANK = Derivation(
    lambda s: None if s.is_multinode else 0,
    "0 on a single-node endpoint",
    "is set for each pod by llm-launch (0 on the leader, 1 to nodes_per_worker - 1 on the workers)",
)
_DIST_INIT_ADDR = Derivation(
    lambda s: None,
    "",
    "is set for each group when it starts (the leader's address and the rendezvous port)",
)


def _derived(name: str, type_: ValueType, derivation: Derivation) -> LaunchField:
    return LaunchField(name, type_, Kind.DERIVED, derivation=derivation)


def _same_as(name: str, target: str) -> LaunchField:
    return LaunchField(name, _STR, Kind.SAME_AS, same_as=target)


_TRUST_REMOTE_CODE = LaunchField("trust_remote_code", _BOOL, false_is_absent=True)

# VLLMModelConfig + VLLMEngineAdditionalArgs (Launch synced them with vLLM 0.6.4).
VLLM_FIELDS: dict[str, LaunchField] = {
    f.name: f
    for f in [
        _TRUST_REMOTE_CODE,
        *_flags(_INT, "max_model_len max_num_seqs max_num_batched_tokens seed block_size"),
        *_flags(_INT, "max_seq_len_to_capture num_gpu_blocks_override"),
        *_flags(_BOOL, "enforce_eager disable_log_requests enable_auto_tool_choice"),
        *_flags(_BOOL, "disable_sliding_window skip_tokenizer_init enable_prefix_caching"),
        *_flags(_STR, "tool_call_parser load_format config_format tokenizer_mode tokenizer dtype"),
        *_flags(_STR, "limit_mm_per_prompt revision code_revision tokenizer_revision"),
        *_flags(_STR, "quantization_param_path cache_dtype attention_backend"),
        *_flags(_FLOAT, "gpu_memory_utilization swap_space"),
        # Launch's deprecated name of gpu_memory_utilization: the same flag.
        LaunchField("max_gpu_memory_utilization", _FLOAT, key="gpu-memory-utilization"),
        *_flags(ValueType.OBJECT, "rope_scaling override_neuron_config mm_processor_kwargs"),
        _derived("tensor_parallel_size", _INT, _VLLM_TP),
        _derived("pipeline_parallel_size", _INT, _VLLM_PP),
        _derived("served_model_name", _STR, _SERVED),
        _same_as("quantization", "quantize"),
        _same_as("chat_template", "chat_template_override"),
    ]
}

# SGLangModelConfig + SGLangEndpointAdditionalArgs (Launch synced them with SGLang in
# January 2025; some flags have since left SGLang, and are refused by the option list).
SGLANG_FIELDS: dict[str, LaunchField] = {
    f.name: f
    for f in [
        _TRUST_REMOTE_CODE,
        *_flags(_BOOL, "skip_tokenizer_init is_embedding prefill_only_one_req log_requests"),
        *_flags(_BOOL, "show_time_cost enable_metrics enable_cache_report enable_double_sparsity"),
        *_flags(_BOOL, "disable_radix_cache disable_jump_forward disable_cuda_graph"),
        *_flags(_BOOL, "disable_cuda_graph_padding disable_outlines_disk_cache"),
        *_flags(_BOOL, "disable_custom_all_reduce disable_mla disable_overlap_schedule"),
        *_flags(_BOOL, "enable_mixed_chunk enable_dp_attention enable_ep_moe enable_torch_compile"),
        *_flags(_BOOL, "enable_nan_detection enable_p2p_check triton_attention_reduce_in_fp32"),
        *_flags(_BOOL, "delete_ckpt_after_loading enable_memory_saver allow_auto_truncate"),
        *_flags(_BOOL, "enable_custom_logit_processor"),
        *_flags(_INT, "context_length max_running_requests max_total_tokens chunked_prefill_size"),
        *_flags(_INT, "max_prefill_tokens cpu_offload_gb stream_interval random_seed base_gpu_id"),
        *_flags(_INT, "decode_log_interval data_parallel_size expert_parallel_size"),
        *_flags(_INT, "max_loras_per_batch speculative_num_steps speculative_num_draft_tokens"),
        *_flags(_INT, "speculative_eagle_topk ds_heavy_channel_num ds_heavy_token_num"),
        *_flags(_INT, "ds_sparse_decode_threshold torch_compile_max_bs cuda_graph_max_bs"),
        *_flags(_INT, "triton_attention_num_kv_splits num_continuous_decode_steps"),
        *_flags(_FLOAT, "mem_fraction_static schedule_conservativeness watchdog_timeout"),
        *_flags(_STR, "load_format dtype kv_cache_dtype quantization_param_path device revision"),
        *_flags(_STR, "schedule_policy constrained_json_whitespace_pattern download_dir"),
        *_flags(_STR, "log_level log_level_http load_balance_method json_model_override_args"),
        *_flags(_STR, "attention_backend sampling_backend grammar_backend speculative_algorithm"),
        *_flags(_STR, "speculative_draft_model_path ds_channel_config_path ds_heavy_channel_type"),
        *_flags(_STR, "torchao_config tool_call_parser"),
        # SGLang renamed --file-storage-pth to --file-storage-path: the same setting.
        LaunchField("file_storage_pth", _STR, key="file-storage-path"),
        LaunchField("lora_paths", ValueType.STR_LIST),
        LaunchField("cuda_graph_bs", ValueType.INT_LIST),
        _derived("tp_size", _INT, _SGLANG_TP),
        # SGLang's own aliases of --tp-size and --pp-size.
        _derived("tensor_parallel_size", _INT, _SGLANG_TP),
        _derived("pipeline_parallel_size", _INT, _SGLANG_PP),
        _derived("nnodes", _INT, _NNODES),
        _derived("node_rank", _INT, _NODE_RANK),
        _derived("dist_init_addr", _STR, _DIST_INIT_ADDR),
        _derived("served_model_name", _STR, _SERVED),
        _same_as("quantization", "quantize"),
        _same_as("chat_template", "chat_template_override"),
        _same_as("huggingface_repo", "checkpoint_path"),
        LaunchField(
            "api_key",
            _STR,
            Kind.REFUSED,
            why="cannot be set: llm-launch's forwarder fronts the engine with the endpoint's "
            "own token and calls the engine without a key, so an engine API key would refuse "
            "every request the forwarder passes on",
        ),
    ]
}

FIELDS: dict[InferenceFramework, dict[str, LaunchField]] = {
    InferenceFramework.VLLM: VLLM_FIELDS,
    InferenceFramework.SGLANG: SGLANG_FIELDS,
}
# Every Launch engine field name, and its type (the same wherever both frameworks have it).
ENGINE_FIELD_TYPES: dict[str, ValueType] = {
    f.name: f.type for table in FIELDS.values() for f in table.values()
}
FRAMEWORK_NAMES = {InferenceFramework.VLLM: "vLLM", InferenceFramework.SGLANG: "SGLang"}


def field_description(name: str) -> str:
    """What a Launch engine field does in llm-launch, per framework (for /openapi.json)."""
    parts = []
    for framework, table in FIELDS.items():
        if (f := table.get(name)) is not None:
            parts.append(f"{FRAMEWORK_NAMES[framework]}: {_meaning(f)}")
    return "Launch's engine field. " + "; ".join(parts) + ". Null means absent."


def _meaning(f: LaunchField) -> str:
    if f.kind is Kind.FLAG:
        return f"--{f.engine_key}"
    if f.kind is Kind.SAME_AS:
        return f"the same as {f.same_as}"
    if f.kind is Kind.REFUSED:
        return f"refused ({f.why})"
    assert f.derivation is not None
    if f.derivation.why:
        return f"computed by llm-launch; {f.derivation.formula or 'never sent'}"
    return f"computed by llm-launch ({f.derivation.formula}); accepted when equal"


__all__ = [
    "ENGINE_FIELD_TYPES",
    "FIELDS",
    "FRAMEWORK_NAMES",
    "SGLANG_FIELDS",
    "VLLM_FIELDS",
    "Derivation",
    "Kind",
    "LaunchField",
    "ValueType",
    "field_description",
]
