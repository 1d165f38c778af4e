"""Field-level input rules (issue 8): what is inside a parsed body is bounded and clean.

Strings that reach argv, the environment or paths hold no control characters and stay
under documented sizes; every integer and quantity has a documented bound; free-form JSON
is bounded in depth and size and holds no NaN/Infinity; an `engine_args` key that the
engine's parser would read as a flag llm-launch sets itself is refused, however it is
spelt. Every case is a 422 naming the field, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain import limits
from llm_launch.domain.engine_flags import engine_arg_key_problem
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.frameworks import InferenceFramework
from llm_launch.domain.quantity import parse_quantity
from llm_launch.domain.spec_builder import build_spec
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()


def nested(depth: int) -> dict[str, Any]:
    """A JSON object `depth` levels deep: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def post_raw(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST `body` as Python's json writes it: NaN and Infinity as such, and lone
    surrogates escaped (httpx's own encoder refuses both)."""
    content = json.dumps(body).encode("ascii")
    return client.post(path, content=content, headers={"content-type": "application/json"})


def sglang_body(**overrides: Any) -> dict[str, Any]:
    return endpoint_body(inference_framework="sglang", **overrides)


# (test id, a full request body, the field the error must name, words the message must hold)
REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    # 1. strings that reach argv, env or paths
    (
        "NUL in an engine_args value",
        endpoint_body(engine_args={"api-key": "se\x00cret"}),
        "engine_args.api-key",
        "control character",
    ),
    (
        "NUL in a string nested in an engine_args list",
        endpoint_body(engine_args={"cuda-graph-sizes": ["1\x00"]}),
        "engine_args.cuda-graph-sizes",
        "control character",
    ),
    (
        "escape in a string nested in an engine_args object",
        endpoint_body(engine_args={"override-generation-config": {"a": "\x1b[2J"}}),
        "engine_args.override-generation-config",
        "control character",
    ),
    (
        "newline after an engine_args key",
        endpoint_body(engine_args={"max-model-len\n": 8}),
        "engine_args.max-model-len\n",
        "flag name",
    ),
    (
        "an engine_args value over its size",
        endpoint_body(engine_args={"api-key": "k" * (16 * 1024 + 1)}),
        "engine_args.api-key",
        "16384",
    ),
    (
        "engine_args over their total size",
        endpoint_body(engine_args={f"flag-{i}": "v" * 15_000 for i in range(6)}),
        "engine_args",
        "65536",
    ),
    (
        "NUL in the chat template",
        endpoint_body(chat_template_override="{{ x }}\x00"),
        "chat_template_override",
        "control character",
    ),
    (
        "DEL in the chat template",
        endpoint_body(chat_template_override="{{ x }}\x7f"),
        "chat_template_override",
        "control character",
    ),
    (
        "C1 control in the chat template",
        endpoint_body(chat_template_override="{{ x }}\x85"),
        "chat_template_override",
        "control character",
    ),
    (
        "chat template over its size",
        endpoint_body(chat_template_override="x" * (64 * 1024 + 1)),
        "chat_template_override",
        "65536",
    ),
    (
        "lone surrogate in the chat template",
        endpoint_body(chat_template_override="{{ x }}\ud800"),
        "chat_template_override",
        "surrogate",
    ),
    (
        "NUL in the checkpoint path",
        endpoint_body(checkpoint_path="/models/llama\x00x"),
        "checkpoint_path",
        "control character",
    ),
    (
        "newline in the checkpoint path",
        endpoint_body(checkpoint_path="s3://bucket/llama\n"),
        "checkpoint_path",
        "control character",
    ),
    (
        "checkpoint path over PATH_MAX",
        endpoint_body(checkpoint_path="/" + "a" * 4096),
        "checkpoint_path",
        "4096",
    ),
    (
        "newline after the model name",
        endpoint_body(model_name="llama-3-8b\n"),
        "model_name",
        "letters, digits",
    ),
    (
        "newline after the image tag",
        endpoint_body(inference_framework_image_tag="v0.11.0\n"),
        "inference_framework_image_tag",
        "image tag",
    ),
    (
        "newline after a label value",
        endpoint_body(labels={"team": "infra\n"}),
        "labels.team",
        "label value",
    ),
    (
        "too many labels",
        endpoint_body(labels={f"k{i}": "v" for i in range(65)}),
        "labels",
        "at most 64",
    ),
    # Callbacks and post-inference hooks are refused whatever they hold (not supported).
    (
        "NUL in the callback URL",
        endpoint_body(default_callback_url="https://example.com/\x00"),
        "default_callback_url",
        "does not support",
    ),
    (
        "too many post-inference hooks",
        endpoint_body(post_inference_hooks=["callback\x00"] * 17),
        "post_inference_hooks",
        "does not support",
    ),
    (
        "NUL in a metadata string",
        endpoint_body(metadata={"note": "a\x00b"}),
        "metadata",
        "NUL",
    ),
    # 2. integers and quantities
    (
        "workers beyond 64 bits",
        endpoint_body(min_workers=10**30, max_workers=10**30),
        "max_workers",
        "at most 1000",
    ),
    (
        "min_workers beyond a database integer",
        endpoint_body(min_workers=3_000_000_000, max_workers=3_000_000_000),
        "min_workers",
        "at most 1000",
    ),
    ("max_workers one over", endpoint_body(max_workers=1001), "max_workers", "at most 1000"),
    ("per_worker beyond 64 bits", endpoint_body(per_worker=10**30), "per_worker", "at most"),
    (
        "nodes_per_worker of a million",
        seed_body(nodes_per_worker=10**6),
        "nodes_per_worker",
        "at most 64",
    ),
    ("gpus beyond 64 bits", endpoint_body(gpus=10**30, num_shards=10**30), "gpus", "at most 64"),
    ("num_shards beyond 64 bits", endpoint_body(num_shards=10**30), "num_shards", "at most 64"),
    (
        "an engine_args integer beyond int64",
        endpoint_body(engine_args={"max-model-len": 2**63}),
        "engine_args.max-model-len",
        "64-bit",
    ),
    ("memory exponent", endpoint_body(memory="1e9999999"), "memory", "exponent"),
    ("storage exponent", endpoint_body(storage="1e9999999"), "storage", "exponent"),
    ("cpus exponent", endpoint_body(cpus="1e9999999"), "cpus", "exponent"),
    ("memory over its maximum", endpoint_body(memory="65Ti"), "memory", "at most"),
    ("cpus over their maximum", endpoint_body(cpus=4097), "cpus", "at most"),
    ("storage over its maximum", endpoint_body(storage="2Pi"), "storage", "at most"),
    # 3. free-form JSON
    ("metadata 33 deep", endpoint_body(metadata=nested(33)), "metadata", "32"),
    ("metadata 450 deep", endpoint_body(metadata=nested(450)), "metadata", "32"),
    ("metadata 900 deep", endpoint_body(metadata=nested(900)), "metadata", "32"),
    ("billing_tags 33 deep", endpoint_body(billing_tags=nested(33)), "billing_tags", "32"),
    (
        "an engine_args value 33 deep",
        endpoint_body(engine_args={"override-generation-config": nested(33)}),
        "engine_args",
        "32",
    ),
    (
        "metadata over its size",
        endpoint_body(metadata={"blob": "x" * (64 * 1024)}),
        "metadata",
        "65536",
    ),
    ("NaN in metadata", endpoint_body(metadata={"a": [float("nan")]}), "metadata", "NaN"),
    (
        "Infinity in billing_tags",
        endpoint_body(billing_tags={"a": float("inf")}),
        "billing_tags",
        "Infinity",
    ),
    (
        "-Infinity in engine_args",
        endpoint_body(engine_args={"mem-fraction-static": float("-inf")}),
        "engine_args.mem-fraction-static",
        "Infinity",
    ),
    # 4. reserved flags, however spelt
    ("upper case", endpoint_body(engine_args={"HOST": "0.0.0.0"}), "engine_args.HOST", "--host"),
    ("underscore inside", endpoint_body(engine_args={"ho_st": "x"}), "engine_args.ho_st", "--host"),
    ("a prefix (vLLM)", endpoint_body(engine_args={"hos": "x"}), "engine_args.hos", "--host"),
    ("a short option (vLLM)", endpoint_body(engine_args={"-p": 1}), "engine_args.-p", "short"),
    ("a short option (SGLang)", sglang_body(engine_args={"-p": 1}), "engine_args.-p", "short"),
    ("a prefix (SGLang)", sglang_body(engine_args={"hos": "x"}), "engine_args.hos", "--host"),
    (
        "an alias of a reserved flag (SGLang)",
        sglang_body(engine_args={"nccl-init-addr": "10.0.0.1:5000"}),
        "engine_args.nccl-init-addr",
        "--dist-init-addr",
    ),
    (
        "a prefix ambiguous with a reserved flag (SGLang)",
        sglang_body(engine_args={"tensor": 2}),
        "engine_args.tensor",
        "--tensor-parallel-size",
    ),
    (
        "a config file that would set anything (SGLang)",
        sglang_body(engine_args={"config": "/tmp/x.yaml"}),
        "engine_args.config",
        "--config",
    ),
    (
        "an engine API key, which would refuse the forwarder (SGLang)",
        sglang_body(engine_args={"api-key": "secret"}),
        "engine_args.api-key",
        "--api-key",
    ),
    (
        "not a flag of SGLang at all",
        sglang_body(engine_args={"context-lenght": 8192}),
        "engine_args.context-lenght",
        "context-length",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [pytest.param(b, f, w, id=i) for i, b, f, w in REJECTIONS],
)
def test_a_field_breaking_an_input_rule_is_422_naming_it_and_nothing_is_stored(
    alice: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    response = post_raw(alice, "/v1/llm/model-endpoints", body)
    assert response.status_code == 422, response.text[:2000]
    document = response.json()
    matching = [e for e in document["errors"] if e["field"] == field]
    assert matching, f"no error names {field!r}: {str(document['errors'])[:2000]}"
    assert any(words in e["message"] for e in matching), matching
    assert document["detail"]
    listed = alice.get("/v1/llm/model-endpoints", params={"name": body["name"]})
    assert listed.status_code == 200
    assert listed.json()["model_endpoints"] == []


def test_an_update_breaking_an_input_rule_is_422_and_changes_nothing(
    alice: httpx.Client,
) -> None:
    body = endpoint_body()
    assert alice.post("/v1/llm/model-endpoints", json=body).status_code == 200
    path = f"/v1/llm/model-endpoints/{body['name']}"
    try:
        for change in (
            {"max_workers": 10**30},
            {"metadata": nested(450)},
            {"engine_args": {"api-key": "\x00"}},
        ):
            response = alice.put(path, json=change)
            assert response.status_code == 422, response.text[:2000]
        endpoint = alice.get(path).json()
        assert endpoint["spec"]["deployment_state"]["max_workers"] == body["max_workers"]
        assert endpoint["spec"]["engine_args"] == {}
    finally:
        alice.delete(path)


def test_a_bad_value_is_not_echoed_back_in_full(alice: httpx.Client) -> None:
    body = endpoint_body(gpu_type="g" * 100_000, quantize="q" * 100_000)
    response = alice.post("/v1/llm/model-endpoints", json=body)
    assert response.status_code == 422
    assert len(response.content) < 4096


AT_THE_LIMITS: dict[str, Any] = {
    "per_worker": limits.MAX_PER_WORKER,
    "memory": "64Ti",
    "cpus": 4096,
    "storage": "1Pi",
    "chat_template_override": "{% for m in messages %}\r\n\t{{ m }}{% endfor %}",
    "metadata": nested(limits.MAX_JSON_DEPTH),
    "engine_args": {"max-model-len": 2**63 - 1, "override-generation-config": {"a": -(2**63)}},
}
ONE_PAST: dict[str, Any] = {
    "per_worker": limits.MAX_PER_WORKER + 1,
    "memory": str(2**46 + 1),
    "cpus": 4097,
    "storage": str(2**50 + 1),
    "chat_template_override": "\x0b",
    "metadata": nested(limits.MAX_JSON_DEPTH + 1),
    "engine_args": {"max-model-len": 2**63},
}


def test_the_limits_themselves_are_accepted_and_one_past_them_is_not(
    alice: httpx.Client,
) -> None:
    body = endpoint_body(**AT_THE_LIMITS)
    response = alice.post("/v1/llm/model-endpoints", json=body)
    assert response.status_code == 200, response.text
    assert alice.delete(f"/v1/llm/model-endpoints/{body['name']}").status_code == 200
    for name, value in ONE_PAST.items():
        response = alice.post("/v1/llm/model-endpoints", json=endpoint_body(**{name: value}))
        assert response.status_code == 422, (name, response.text[:500])
        assert any(e["field"].startswith(name) for e in response.json()["errors"]), name


def test_openapi_publishes_the_integer_bounds(alice: httpx.Client) -> None:
    schemas = alice.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["CreateEndpointRequest"]["properties"]
    expected = {
        "min_workers": (0, limits.MAX_WORKERS),
        "max_workers": (0, limits.MAX_WORKERS),
        "per_worker": (1, limits.MAX_PER_WORKER),
        "nodes_per_worker": (1, limits.MAX_NODES_PER_WORKER),
        "gpus": (0, limits.MAX_GPUS_PER_NODE),
        "num_shards": (1, limits.MAX_NUM_SHARDS),
    }
    for name, (low, high) in expected.items():
        text = json.dumps(fields[name])
        assert f'"minimum": {low}' in text, (name, text)
        assert f'"maximum": {high}' in text, (name, text)


# --- the same rules for specs built outside the API (CLI files, metadata._llm) ----------


def test_a_spec_built_outside_the_api_obeys_the_integer_bounds() -> None:
    build_spec(endpoint_body(max_workers=limits.MAX_WORKERS), CATALOG)
    with pytest.raises(InvalidRequest):
        build_spec(endpoint_body(max_workers=limits.MAX_WORKERS + 1), CATALOG)
    with pytest.raises(InvalidRequest) as error:
        build_spec(
            endpoint_body(min_workers=10**30, max_workers=10**30, per_worker=10**30), CATALOG
        )
    assert {"min_workers", "max_workers", "per_worker"} <= {e.field for e in error.value.errors}


def test_a_non_string_from_metadata_llm_is_a_field_error_not_a_crash() -> None:
    body = endpoint_body(metadata={"_llm": {"chat_template_override": {"x": 1}}})
    with pytest.raises(InvalidRequest) as error:
        build_spec(body, CATALOG)
    assert "chat_template_override" in {e.field for e in error.value.errors}


def test_a_spec_built_outside_the_api_refuses_deep_metadata_without_recursing() -> None:
    with pytest.raises(InvalidRequest) as error:
        build_spec(endpoint_body(metadata=nested(50_000)), CATALOG)
    assert [e.field for e in error.value.errors] == ["metadata"]


@pytest.mark.parametrize("text", ["1e9999999", "1e-9999999", "1E19", "1" * 65, "-1e19"])
def test_a_quantity_with_an_absurd_magnitude_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("key", "framework", "words"),
    [
        ("HOST", InferenceFramework.VLLM, "--host"),
        ("Ho_St", InferenceFramework.SGLANG, "--host"),
        ("--hos", InferenceFramework.SGLANG, "--host"),
        ("served_model", InferenceFramework.VLLM, "--served-model-name"),
        ("tensor-parallel", InferenceFramework.SGLANG, "--tp-size (--tensor-parallel-size)"),
        ("model", InferenceFramework.SGLANG, "--model-path (--model)"),
        ("config", InferenceFramework.VLLM, "--config"),
        ("p", InferenceFramework.VLLM, "short"),
        ("-tp", InferenceFramework.VLLM, "short"),
        ("cuda-graph-bs", InferenceFramework.SGLANG, "ambiguous"),
        ("Context-Length", InferenceFramework.VLLM, "lowercase"),
    ],
)
def test_an_engine_args_key_is_read_as_the_engines_parser_reads_it(
    key: str, framework: InferenceFramework, words: str
) -> None:
    problem = engine_arg_key_problem(key, framework)
    assert problem is not None and words in problem, problem


def test_an_unambiguous_prefix_of_a_free_sglang_flag_is_accepted() -> None:
    assert engine_arg_key_problem("mem-fraction-stat", InferenceFramework.SGLANG) is None
    assert engine_arg_key_problem("--context_length", InferenceFramework.SGLANG) is None
    assert engine_arg_key_problem("anything-vllm-has", InferenceFramework.VLLM) is None
