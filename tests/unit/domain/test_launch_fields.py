"""Launch's engine and common fields: each accepted with its meaning (issue 11 items 1-3).

Flags become engine arguments (every vLLM one checked here in the plan's argv; the SGLang
ones are read back by SGLang's own parser in tests/conformance/test_launch_sglang_fields.py),
derived fields must equal what llm-launch computes, same_as fields fill or agree with
llm-launch's own, and null (and `trust_remote_code: false`) means absent.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.engine_flags import engine_arg_key_problem
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.frameworks import InferenceFramework
from llm_launch.domain.launch_fields import (
    ENGINE_FIELD_TYPES,
    SGLANG_FIELDS,
    VLLM_FIELDS,
    Kind,
    LaunchField,
    ValueType,
)
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.spec_builder import apply_update, build_spec
from llm_launch.engines.plan import LaunchPlan
from llm_launch.engines.planner import plan_launch
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()

# A sample value of each Launch type, and the argv items it must become (engines/args.py).
SAMPLES: dict[ValueType, Any] = {
    ValueType.INT: 7,
    ValueType.FLOAT: 0.5,
    ValueType.BOOL: True,
    ValueType.STR: "sample value",
    ValueType.STR_LIST: ["a", "b c"],
    ValueType.INT_LIST: [1, 2],
    ValueType.OBJECT: {"factor": 2.0, "type": "yarn"},
}
ARGV: dict[ValueType, Any] = {
    ValueType.INT: lambda flag: [f"{flag}=7"],
    ValueType.FLOAT: lambda flag: [f"{flag}=0.5"],
    ValueType.BOOL: lambda flag: [flag],
    ValueType.STR: lambda flag: [f"{flag}=sample value"],
    ValueType.STR_LIST: lambda flag: [flag, "a", "b c"],
    ValueType.INT_LIST: lambda flag: [flag, "1", "2"],
    ValueType.OBJECT: lambda flag: [f'{flag}={{"factor": 2.0, "type": "yarn"}}'],
}


def flags_of(table: dict[str, LaunchField]) -> list[LaunchField]:
    return [f for f in table.values() if f.kind is Kind.FLAG]


def refused(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as error:
        build_spec(body, CATALOG)
    return {e.field: e.message for e in error.value.errors}


def refused_update(spec: EndpointSpec, changes: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as error:
        apply_update(spec, changes, CATALOG)
    return {e.field: e.message for e in error.value.errors}


def extra_argv(plan: LaunchPlan) -> list[str]:
    """The leader engine's argv items after `--`: the engine arguments."""
    command = list(plan.leader.container("engine").command)
    return command[command.index("--") + 1 :] if "--" in command else []


def sglang_body(**overrides: Any) -> dict[str, Any]:
    return endpoint_body(inference_framework="sglang", **overrides)


class TestNullMeansAbsent:
    def test_a_body_with_every_launch_engine_field_null_builds_the_same_spec(self) -> None:
        body = endpoint_body()
        nulls = dict.fromkeys(ENGINE_FIELD_TYPES)
        assert build_spec({**body, **nulls}, CATALOG) == build_spec(body, CATALOG)

    def test_trust_remote_code_false_leaves_the_flag_off_on_create(self) -> None:
        spec = build_spec(endpoint_body(trust_remote_code=False), CATALOG)
        assert spec.engine_args == {}
        assert "--trust-remote-code" not in extra_argv(plan_launch(spec))

    def test_trust_remote_code_false_in_an_update_leaves_the_flag_on(self) -> None:
        spec = build_spec(endpoint_body(trust_remote_code=True), CATALOG)
        assert extra_argv(plan_launch(spec)) == ["--trust-remote-code"]
        updated = apply_update(spec, {"trust_remote_code": False, "min_workers": 0}, CATALOG)
        assert updated.engine_args == {"trust-remote-code": True}

    def test_an_update_of_nulls_only_changes_nothing(self) -> None:
        spec = build_spec(seed_body(mem_fraction_static=0.8), CATALOG)
        nulls = dict.fromkeys(ENGINE_FIELD_TYPES)
        assert apply_update(spec, {**nulls, "trust_remote_code": False}, CATALOG) == spec


@pytest.mark.parametrize("launch_field", flags_of(VLLM_FIELDS), ids=lambda f: f.name)
def test_every_vllm_flag_field_becomes_its_engine_argument_in_the_plan(
    launch_field: LaunchField,
) -> None:
    value = SAMPLES[launch_field.type]
    spec = build_spec(endpoint_body(**{launch_field.name: value}), CATALOG)
    flag = f"--{launch_field.engine_key}"
    assert spec.engine_args == {launch_field.engine_key: value}
    assert extra_argv(plan_launch(spec)) == ARGV[launch_field.type](flag)


def test_some_vllm_fields_become_the_flags_vllm_names_them() -> None:
    spec = build_spec(
        endpoint_body(max_model_len=8192, enforce_eager=True, max_gpu_memory_utilization=0.85),
        CATALOG,
    )
    assert extra_argv(plan_launch(spec)) == [
        "--enforce-eager",
        "--gpu-memory-utilization=0.85",
        "--max-model-len=8192",
    ]


@pytest.mark.parametrize("launch_field", flags_of(SGLANG_FIELDS), ids=lambda f: f.name)
def test_every_sglang_flag_field_is_an_engine_argument_or_refused_naming_it(
    launch_field: LaunchField,
) -> None:
    value = SAMPLES[launch_field.type]
    body = sglang_body(**{launch_field.name: value})
    if engine_arg_key_problem(launch_field.engine_key, InferenceFramework.SGLANG) is None:
        spec = build_spec(body, CATALOG)
        assert spec.engine_args == {launch_field.engine_key: value}
    else:
        message = refused(body)[launch_field.name]
        assert "SGLang 0.5.23 no longer has" in message and "leave it null" in message


def test_mem_fraction_static_gives_sglang_its_flag() -> None:
    spec = build_spec(seed_body(mem_fraction_static=0.85, file_storage_pth="/data"), CATALOG)
    assert extra_argv(plan_launch(spec)) == [
        "--file-storage-path=/data",  # SGLang's new name of --file-storage-pth
        "--mem-fraction-static=0.85",
    ]


def test_a_field_sglang_split_in_two_names_the_flags_it_has_now() -> None:
    message = refused(sglang_body(cuda_graph_max_bs=8))["cuda_graph_max_bs"]
    assert "--cuda-graph-max-bs-decode, --cuda-graph-max-bs-prefill" in message


class TestDerived:
    def test_the_seeds_tensor_parallel_size_16_is_accepted_and_8_refused_with_16(self) -> None:
        spec = build_spec(seed_body(tp_size=16, tensor_parallel_size=16, nnodes=2), CATALOG)
        assert spec == build_spec(seed_body(name=spec.name), CATALOG)
        message = refused(seed_body(tp_size=8))["tp_size"]
        assert message.startswith("must be 16, what llm-launch computes")

    @pytest.mark.parametrize(
        "body",
        [
            seed_body(),
            endpoint_body(gpus=4, num_shards=4, gpu_type="nvidia-hopper-h100"),
            endpoint_body(gpus=8, num_shards=8, gpu_type="nvidia-hopper-h100", nodes_per_worker=3),
            sglang_body(gpus=0, num_shards=1, gpu_type=None),
        ],
        ids=["seed", "vllm-4-gpus", "vllm-3-nodes", "sglang-cpu"],
    )
    def test_the_parallel_sizes_accepted_are_the_plans_own(self, body: dict[str, Any]) -> None:
        plan = plan_launch(build_spec(body, CATALOG))
        tp = {"tensor_parallel_size": plan.tensor_parallel_size}
        pp = {"pipeline_parallel_size": plan.pipeline_parallel_size}
        if body["inference_framework"] == "sglang":
            tp["tp_size"] = plan.tensor_parallel_size
        build_spec({**body, **tp, **pp, "nnodes": None}, CATALOG)
        wrong = {name: value + 1 for name, value in {**tp, **pp}.items()}
        assert set(refused({**body, **wrong})) == set(wrong)

    def test_the_served_model_name_is_the_endpoints_name(self) -> None:
        body = endpoint_body()
        build_spec({**body, "served_model_name": body["name"]}, CATALOG)
        message = refused({**body, "served_model_name": body["model_name"]})["served_model_name"]
        assert f"must be {body['name']!r}" in message

    def test_node_rank_may_be_0_on_one_node_and_is_never_sent_for_a_group(self) -> None:
        build_spec(sglang_body(node_rank=0, nnodes=1), CATALOG)
        assert "set for each pod" in refused(seed_body(node_rank=0))["node_rank"]

    def test_dist_init_addr_is_always_set_by_llm_launch(self) -> None:
        message = refused(seed_body(dist_init_addr="[fdab::1]:5002"))["dist_init_addr"]
        assert "rendezvous port" in message

    def test_an_update_checks_them_against_the_updated_spec(self) -> None:
        spec = build_spec(endpoint_body(gpus=2, num_shards=2), CATALOG)
        apply_update(spec, {"gpus": 4, "tensor_parallel_size": 4}, CATALOG)
        assert (
            "must be 4"
            in refused_update(spec, {"gpus": 4, "tensor_parallel_size": 2})["tensor_parallel_size"]
        )


class TestSameAs:
    def test_quantization_fills_quantize_and_must_agree_with_it(self) -> None:
        assert build_spec(endpoint_body(quantization="awq"), CATALOG).quantize == "awq"
        build_spec(endpoint_body(quantization="awq", quantize="awq"), CATALOG)
        message = refused(endpoint_body(quantization="awq", quantize="fp8"))["quantization"]
        assert "quantize is 'fp8'" in message

    def test_chat_template_is_the_chat_template_override(self) -> None:
        template = "{% for m in messages %}{{ m.content }}{% endfor %}"
        spec = build_spec(endpoint_body(chat_template=template), CATALOG)
        assert spec.chat_template_override == template
        assert (
            "chat_template_override"
            in refused(endpoint_body(chat_template=template, chat_template_override="{{ x }}"))[
                "chat_template"
            ]
        )

    def test_an_sglang_chat_template_naming_a_builtin_or_a_file_is_refused(self) -> None:
        assert "Jinja text" in refused(sglang_body(chat_template="chatml"))["chat_template"]

    def test_huggingface_repo_is_an_hf_checkpoint_path(self) -> None:
        spec = build_spec(sglang_body(huggingface_repo="org/model"), CATALOG)
        assert spec.checkpoint_path == "hf://org/model"
        build_spec(sglang_body(huggingface_repo="org/m", checkpoint_path="hf://org/m"), CATALOG)
        assert "checkpoint_path" in refused(seed_body(huggingface_repo="org/m"))["huggingface_repo"]


def test_max_gpu_memory_utilization_is_gpu_memory_utilization_and_both_must_agree() -> None:
    both = endpoint_body(gpu_memory_utilization=0.8, max_gpu_memory_utilization=0.8)
    assert build_spec(both, CATALOG).engine_args == {"gpu-memory-utilization": 0.8}
    message = refused({**both, "max_gpu_memory_utilization": 0.9})["max_gpu_memory_utilization"]
    assert "gpu_memory_utilization is 0.8" in message


def test_sglangs_api_key_is_refused_because_it_would_lock_out_the_forwarder() -> None:
    assert "forwarder" in refused(sglang_body(api_key="secret"))["api_key"]


def test_a_field_of_the_other_framework_is_refused_naming_both() -> None:
    assert refused(sglang_body(max_model_len=8192)) == {
        "max_model_len": "is a vLLM field of Launch; this endpoint runs sglang"
    }
    assert refused(endpoint_body(mem_fraction_static=0.8)) == {
        "mem_fraction_static": "is an SGLang field of Launch; this endpoint runs vllm"
    }


class TestWithEngineArgs:
    def test_the_same_flag_in_both_must_agree(self) -> None:
        agreed = endpoint_body(max_model_len=8192, engine_args={"max_model_len": 8192})
        assert build_spec(agreed, CATALOG).engine_args == {"max_model_len": 8192}
        message = refused({**agreed, "max_model_len": 4096})["max_model_len"]
        assert "engine_args.max_model_len is 8192" in message

    def test_sglang_aliases_are_one_flag(self) -> None:
        message = refused(seed_body(data_parallel_size=2, engine_args={"dp-size": 4}))
        assert "--dp-size" in message["data_parallel_size"]

    def test_an_engine_flag_rule_broken_by_a_launch_field_names_that_field(self) -> None:
        errors = refused(endpoint_body(max_model_len=2**63, rope_scaling={"a": float("nan")}))
        assert "64-bit" in errors["max_model_len"]
        assert errors["rope_scaling"] == "NaN is not a JSON number (at rope_scaling.a)"


class TestUpdate:
    def test_a_launch_field_sets_its_flag_and_keeps_the_others(self) -> None:
        spec = build_spec(seed_body(engine_args={"context-length": 8192}), CATALOG)
        updated = apply_update(spec, {"mem_fraction_static": 0.8}, CATALOG)
        assert updated.engine_args == {"context-length": 8192, "mem-fraction-static": 0.8}

    def test_it_replaces_the_stored_value_of_its_flag_however_spelt(self) -> None:
        spec = build_spec(seed_body(engine_args={"context_length": 8192}), CATALOG)
        updated = apply_update(spec, {"context_length": 4096}, CATALOG)
        assert updated.engine_args == {"context-length": 4096}

    def test_engine_args_sent_replace_the_map_and_launch_fields_fold_over(self) -> None:
        spec = build_spec(seed_body(engine_args={"context-length": 8192}), CATALOG)
        changes = {"engine_args": {"enable-metrics": True}, "mem_fraction_static": 0.8}
        updated = apply_update(spec, changes, CATALOG)
        assert updated.engine_args == {"enable-metrics": True, "mem-fraction-static": 0.8}
        clash = {"engine_args": {"mem-fraction-static": 0.7}, "mem_fraction_static": 0.8}
        assert "mem_fraction_static" in refused_update(spec, clash)


class TestCommonFields:
    def test_the_clients_null_and_empty_values_are_accepted(self) -> None:
        body = endpoint_body(
            post_inference_hooks=[], default_callback_url=None, default_callback_auth=None
        )
        assert build_spec(body, CATALOG).post_inference_hooks is None

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("post_inference_hooks", ["callback"]),
            ("default_callback_url", "https://example.com/cb"),
            ("default_callback_auth", {"kind": "basic", "username": "u", "password": "p"}),
        ],
    )
    def test_behaviour_llm_launch_does_not_have_is_refused_saying_so(
        self, field: str, value: Any
    ) -> None:
        assert "llm-launch does not support" in refused(endpoint_body(**{field: value}))[field]
        spec = build_spec(endpoint_body(), CATALOG)
        assert "llm-launch does not support" in refused_update(spec, {field: value})[field]

    def test_queue_settings_are_stored_within_their_bounds(self) -> None:
        spec = build_spec(
            endpoint_body(task_expires_seconds=3600, queue_message_timeout_seconds=60), CATALOG
        )
        assert (spec.task_expires_seconds, spec.queue_message_timeout_seconds) == (3600, 60)
        errors = refused(endpoint_body(task_expires_seconds=0, queue_message_timeout_seconds=10**9))
        assert set(errors) == {"task_expires_seconds", "queue_message_timeout_seconds"}

    def test_memory_and_storage_may_be_numbers_of_bytes_as_in_launch(self) -> None:
        spec = build_spec(endpoint_body(memory=34359738368, storage=1e11), CATALOG)
        assert (spec.memory, spec.storage) == ("34359738368", "100000000000")


class TestForceBundleRecreation:
    def test_it_gives_the_groups_a_new_plan_with_nothing_else_changed(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        recreated = apply_update(spec, {"force_bundle_recreation": True}, CATALOG)
        assert plan_launch(recreated) != plan_launch(spec)
        again = apply_update(recreated, {"force_bundle_recreation": True}, CATALOG)
        assert plan_launch(again) != plan_launch(recreated)
        assert plan_launch(again).leader.container("engine").env["LLM_LAUNCH_RECREATION"] == "2"

    def test_false_as_the_client_sends_it_leaves_the_plan_alone(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        same = apply_update(spec, {"force_bundle_recreation": False}, CATALOG)
        assert (same, plan_launch(same)) == (spec, plan_launch(spec))


def test_errors_are_field_errors_named_by_the_launch_field() -> None:
    with pytest.raises(InvalidRequest) as error:
        build_spec(seed_body(tp_size=8, api_key="k"), CATALOG)
    assert all(isinstance(e, FieldError) for e in error.value.errors)
    assert [e.field for e in error.value.errors] == ["api_key", "tp_size"]
