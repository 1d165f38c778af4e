"""Every field Launch's server defines is accepted over HTTP, with its meaning (issue 11).

The vLLM bodies are the official client's own (`llmengine`'s request models, serialized as
`Model.create` and `Model.update` send them: every field, null or false when unset); the
SGLang ones hold every field of Launch's SGLang request model (scaleapi/llm-engine,
`common/dtos/llms/sglang.py`), which the client cannot send (its framework enum has no
sglang). Refusals are 422s naming the field, and change nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from llmengine.data_types.model_endpoints import (
    CreateLLMEndpointRequest,
    UpdateLLMEndpointRequest,
)
from llmengine.data_types.vllm import VLLMEndpointAdditionalArgs

from tests.builders import endpoint_body, seed_body

ENDPOINTS = "/v1/llm/model-endpoints"

# SGLangModelConfig + SGLangEndpointAdditionalArgs, as Launch's server declares them.
LAUNCH_SGLANG_FIELDS = str.split("""
trust_remote_code tp_size skip_tokenizer_init load_format dtype kv_cache_dtype
quantization_param_path quantization context_length device served_model_name chat_template
is_embedding revision mem_fraction_static max_running_requests max_total_tokens
chunked_prefill_size max_prefill_tokens schedule_policy schedule_conservativeness
cpu_offload_gb prefill_only_one_req stream_interval random_seed
constrained_json_whitespace_pattern watchdog_timeout download_dir base_gpu_id log_level
log_level_http log_requests show_time_cost enable_metrics decode_log_interval api_key
file_storage_pth enable_cache_report data_parallel_size load_balance_method
expert_parallel_size dist_init_addr nnodes node_rank json_model_override_args lora_paths
max_loras_per_batch attention_backend sampling_backend grammar_backend speculative_algorithm
speculative_draft_model_path speculative_num_steps speculative_num_draft_tokens
speculative_eagle_topk enable_double_sparsity ds_channel_config_path ds_heavy_channel_num
ds_heavy_token_num ds_heavy_channel_type ds_sparse_decode_threshold disable_radix_cache
disable_jump_forward disable_cuda_graph disable_cuda_graph_padding
disable_outlines_disk_cache disable_custom_all_reduce disable_mla disable_overlap_schedule
enable_mixed_chunk enable_dp_attention enable_ep_moe enable_torch_compile
torch_compile_max_bs cuda_graph_max_bs cuda_graph_bs torchao_config enable_nan_detection
enable_p2p_check triton_attention_reduce_in_fp32 triton_attention_num_kv_splits
num_continuous_decode_steps delete_ckpt_after_loading enable_memory_saver
allow_auto_truncate enable_custom_logit_processor tool_call_parser huggingface_repo
""")
# Launch's common fields the client does not know yet.
LAUNCH_NEWER_COMMON = {
    "task_expires_seconds": None,
    "queue_message_timeout_seconds": None,
    "enable_startup_metrics": None,
}


def client_create_body(**fields: Any) -> dict[str, Any]:
    """What `Model.create` posts: the client's request model, every field serialized."""
    request = CreateLLMEndpointRequest(metadata={}, **fields)
    body: dict[str, Any] = json.loads(request.json())
    return body


def client_update_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(UpdateLLMEndpointRequest(**fields).json())
    return body


def vllm_fields(**overrides: Any) -> dict[str, Any]:
    body = endpoint_body(endpoint_type="streaming", gpu_type="nvidia-hopper-h100")
    return {**body, **overrides}


def sglang_launch_body(**overrides: Any) -> dict[str, Any]:
    """The client's body with Launch's SGLang engine fields for its vLLM ones: every one
    null (trust_remote_code false, its default), then `overrides`."""
    body = client_create_body(**vllm_fields())
    for name in VLLMEndpointAdditionalArgs.__fields__:
        del body[name]
    body.update(dict.fromkeys(LAUNCH_SGLANG_FIELDS), trust_remote_code=False)
    body.update(LAUNCH_NEWER_COMMON, inference_framework="sglang", **overrides)
    return body


def get(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"{ENDPOINTS}/{name}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


class TestTheClientsBodies:
    def test_the_clients_full_create_body_is_accepted_and_its_nulls_mean_nothing(
        self, alice: httpx.Client
    ) -> None:
        body = client_create_body(**vllm_fields())
        assert {"max_model_len", "trust_remote_code", "default_callback_auth"} <= set(body)
        response = alice.post(ENDPOINTS, json=body)
        assert response.status_code == 200, response.text
        endpoint = get(alice, body["name"])
        assert endpoint["spec"]["engine_args"] == {}
        assert endpoint["spec"]["public_inference"] is True

    def test_its_engine_fields_become_engine_arguments(self, alice: httpx.Client) -> None:
        body = client_create_body(**vllm_fields(max_model_len=8192, enforce_eager=True))
        assert alice.post(ENDPOINTS, json=body).status_code == 200
        engine_args = get(alice, body["name"])["spec"]["engine_args"]
        assert engine_args == {"max-model-len": 8192, "enforce-eager": True}

    def test_the_clients_full_update_body_changes_only_what_it_sets(
        self, alice: httpx.Client
    ) -> None:
        body = client_create_body(**vllm_fields(max_model_len=8192, trust_remote_code=True))
        assert alice.post(ENDPOINTS, json=body).status_code == 200
        before = get(alice, body["name"])
        update = client_update_body(max_workers=3, gpu_memory_utilization=0.8)
        response = alice.put(f"{ENDPOINTS}/{body['name']}", json=update)
        assert response.status_code == 200, response.text
        after = get(alice, body["name"])
        assert after["spec"]["deployment_state"]["max_workers"] == 3
        assert after["spec"]["engine_args"] == {
            "max-model-len": 8192,
            "trust-remote-code": True,  # the client's trust_remote_code false leaves it on
            "gpu-memory-utilization": 0.8,
        }
        for key in ("quantize", "checkpoint_path", "num_shards", "model_name"):
            assert after[key] == before[key], key
        assert after["spec"]["resource_state"] == before["spec"]["resource_state"]
        assert after["spec"]["labels"] == before["spec"]["labels"]

    def test_an_sglang_body_with_every_launch_field_is_accepted(self, alice: httpx.Client) -> None:
        body = sglang_launch_body(mem_fraction_static=0.85, tp_size=1, chunked_prefill_size=4096)
        response = alice.post(ENDPOINTS, json=body)
        assert response.status_code == 200, response.text
        assert get(alice, body["name"])["spec"]["engine_args"] == {
            "mem-fraction-static": 0.85,
            "chunked-prefill-size": 4096,
        }


# (test id, body, the field the error must name, words its message must hold)
REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("derived value other than llm-launch's", seed_body(tp_size=8), "tp_size", "must be 16"),
    ("engine api key", seed_body(api_key="k"), "api_key", "forwarder"),
    ("other framework", seed_body(max_model_len=8192), "max_model_len", "vLLM field"),
    ("callback hook", endpoint_body(post_inference_hooks=["callback"]), "post_inference_hooks",
     "does not support"),
    ("callback auth", endpoint_body(default_callback_auth={"kind": "mtls", "cert": "c",
     "key": "k"}), "default_callback_auth", "does not support"),
    ("flag also in engine_args", endpoint_body(max_model_len=1, engine_args={"max-model-len": 2}),
     "max_model_len", "engine_args.max-model-len is 2"),
    ("flag sglang no longer has", seed_body(disable_jump_forward=True), "disable_jump_forward",
     "no longer has"),
    ("misspelt launch field", endpoint_body(max_model_lenn=1), "max_model_lenn", "unknown field"),
    ("launch field of the wrong type", endpoint_body(max_model_len="big"), "max_model_len",
     "integer"),
    ("callback auth of an unknown kind", endpoint_body(default_callback_auth={"kind": "oauth"}),
     "default_callback_auth", "kind"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "words"), [pytest.param(b, f, w, id=i) for i, b, f, w in REFUSALS]
)
def test_a_launch_field_llm_launch_cannot_honour_is_a_422_naming_it(
    alice: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    response = alice.post(ENDPOINTS, json=body)
    assert response.status_code == 422, response.text
    matching = [e for e in response.json()["errors"] if e["field"].startswith(field)]
    assert any(words in e["message"] for e in matching), response.json()["errors"]
    listed = alice.get(ENDPOINTS, params={"name": body["name"]}).json()["model_endpoints"]
    assert listed == []


def test_a_refused_launch_field_in_an_update_changes_nothing(alice: httpx.Client) -> None:
    body = seed_body(name=endpoint_body()["name"], mem_fraction_static=0.8)
    assert alice.post(ENDPOINTS, json=body).status_code == 200
    before = get(alice, body["name"])
    for change in ({"tp_size": 8, "max_workers": 2}, {"node_rank": 1}, {"enforce_eager": True}):
        response = alice.put(f"{ENDPOINTS}/{body['name']}", json=change)
        assert response.status_code == 422, response.text
    assert get(alice, body["name"]) == before


def test_openapi_documents_every_launch_field_with_its_type(alice: httpx.Client) -> None:
    schemas = alice.get("/openapi.json").json()["components"]["schemas"]
    create = schemas["CreateEndpointRequest"]["properties"]
    update = schemas["UpdateEndpointRequest"]["properties"]
    launch = set(CreateLLMEndpointRequest.__fields__) | set(LAUNCH_SGLANG_FIELDS)
    assert launch | set(LAUNCH_NEWER_COMMON) <= set(create)
    assert (launch | set(UpdateLLMEndpointRequest.__fields__)) - {"name"} <= set(update)
    assert "force_bundle_recreation" in update
    assert {"type": "integer"} in create["max_model_len"]["anyOf"]
    assert {"type": "boolean"} in create["trust_remote_code"]["anyOf"]
    assert "--mem-fraction-static" in create["mem_fraction_static"]["description"]
    assert "computed by llm-launch" in create["tp_size"]["description"]
