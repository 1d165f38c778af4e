"""Every validation rule over HTTP: a 4xx naming the field and rule, and nothing persisted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.builders import endpoint_body, seed_body

# (test id, overrides of a valid body, the field the error must name, words the message must hold)
REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown top-level field", {"hig_priority": True}, "hig_priority", "unknown field"),
    ("missing model_name", {"model_name": None}, "model_name", "required"),
    (
        "multinode on an unsupported framework",
        {"inference_framework": "lightllm", "nodes_per_worker": 2},
        "inference_framework",
        "not supported",
    ),
    (
        "multinode needs streaming",
        {"nodes_per_worker": 2, "endpoint_type": "sync"},
        "endpoint_type",
        "streaming",
    ),
    (
        "multinode needs gpus",
        {"nodes_per_worker": 2, "gpus": 0, "gpu_type": None, "num_shards": 1},
        "gpus",
        "multinode",
    ),
    ("async endpoints", {"endpoint_type": "async"}, "endpoint_type", "not supported"),
    ("negative min_workers", {"min_workers": -1}, "min_workers", ">= 0"),
    ("max below min", {"min_workers": 3, "max_workers": 2}, "max_workers", ">= min_workers"),
    ("per_worker zero", {"per_worker": 0}, "per_worker", ">= 1"),
    ("cpus zero", {"cpus": 0}, "cpus", "> 0"),
    ("cpus not a quantity", {"cpus": "lots"}, "cpus", "quantity"),
    ("memory not a quantity", {"memory": "32GB"}, "memory", "quantity"),
    ("storage not a quantity", {"storage": "1 Ti"}, "storage", "quantity"),
    ("gpus without gpu_type", {"gpu_type": None}, "gpu_type", "required when gpus"),
    ("gpu_type without gpus", {"gpus": 0, "num_shards": 1}, "gpus", "gpu_type"),
    (
        "gpu_type not in the catalog",
        {"gpu_type": "nvidia-voodoo-1"},
        "gpu_type",
        "unknown GPU type",
    ),
    ("too many gpus per node", {"gpus": 16, "num_shards": 16}, "gpus", "at most 8"),
    (
        "MIG slices for tensor parallelism",
        {"gpu_type": "nvidia-hopper-h100-1g20gb", "gpus": 2, "num_shards": 2},
        "gpus",
        "NCCL cannot shard a model across slices",
    ),
    (
        "a MIG slice across nodes",
        {"gpu_type": "nvidia-hopper-h100-3g40gb", "nodes_per_worker": 2},
        "nodes_per_worker",
        "must be 1 for gpu_type nvidia-hopper-h100-3g40gb",
    ),
    ("num_shards differs from gpus", {"gpus": 2, "num_shards": 4}, "num_shards", "must equal gpus"),
    ("name not a DNS label", {"name": "My_Endpoint"}, "name", "DNS-1123"),
    ("name ending in a dash", {"name": "endpoint-"}, "name", "DNS-1123"),
    (
        "name too long for a LeaderWorkerSet",
        {**seed_body(), "name": "a" * 41, "max_workers": 1},
        "name",
        "at most 40",
    ),
    (
        "name too long for many replicas",
        {**seed_body(), "name": "a" * 40, "max_workers": 100},
        "name",
        "at most 30",
    ),
    ("label key invalid", {"labels": {"bad key": "x"}}, "labels.bad key", "label key"),
    ("label value invalid", {"labels": {"team": "-x-"}}, "labels.team", "label value"),
    ("label value too long", {"labels": {"team": "x" * 64}}, "labels.team", "63"),
    (
        "reserved label prefix",
        {"labels": {"llm-launch.io/owner": "x"}},
        "labels.llm-launch.io/owner",
        "reserved",
    ),
    ("checkpoint scheme", {"checkpoint_path": "ftp://host/weights"}, "checkpoint_path", "s3://"),
    (
        "relative checkpoint path",
        {"checkpoint_path": "weights/llama"},
        "checkpoint_path",
        "absolute path",
    ),
    (
        "unsupported framework",
        {"inference_framework": "tensorrt_llm"},
        "inference_framework",
        "not supported",
    ),
    (
        "unknown framework",
        {"inference_framework": "magic"},
        "inference_framework",
        "unknown framework",
    ),
    (
        "quantize incompatible with the framework",
        {"quantize": "modelopt_fp4"},
        "quantize",
        "not supported by vllm",
    ),
    (
        "engine arg that llm-launch owns",
        {"engine_args": {"port": 1234}},
        "engine_args.port",
        "set by llm-launch",
    ),
    (
        "engine arg with a bad name",
        {"engine_args": {"no spaces": 1}},
        "engine_args.no spaces",
        "flag name",
    ),
    (
        "_llm disagrees with a field",
        {"metadata": {"_llm": {"num_shards": 4}}},
        "metadata._llm.num_shards",
        "agree",
    ),
    (
        "_llm with an unknown key",
        {"metadata": {"_llm": {"modle_name": "x"}}},
        "metadata._llm.modle_name",
        "unknown key",
    ),
    ("wrong type", {"min_workers": "two"}, "min_workers", "integer"),
]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [pytest.param(o, f, w, id=i) for i, o, f, w in REJECTIONS],
)
def test_a_broken_rule_is_422_naming_the_field_and_nothing_is_stored(
    alice: httpx.Client, overrides: dict[str, Any], field: str, words: str
) -> None:
    body = {k: v for k, v in endpoint_body(**overrides).items() if v is not None}
    response = alice.post("/v1/llm/model-endpoints", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    matching = [e for e in errors if e["field"] == field]
    assert matching, f"no error names {field!r}: {errors}"
    assert any(words in e["message"] for e in matching), matching
    assert field in response.json()["detail"]
    listed = alice.get("/v1/llm/model-endpoints", params={"name": body["name"]}).json()
    assert listed["model_endpoints"] == []


def test_all_problems_of_a_request_are_reported_at_once(alice: httpx.Client) -> None:
    body = endpoint_body(min_workers=-1, per_worker=0, memory="lots", gpu_type="nope")
    fields = {e["field"] for e in alice.post("/v1/llm/model-endpoints", json=body).json()["errors"]}
    assert {"min_workers", "per_worker", "memory", "gpu_type"} <= fields


def test_a_body_that_is_not_json_is_422(alice: httpx.Client) -> None:
    response = alice.post(
        "/v1/llm/model-endpoints",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"name": "a" * 40, "max_workers": 1}, id="longest LWS name"),
        pytest.param(
            {
                "gpus": 0,
                "gpu_type": None,
                "num_shards": 1,
                "nodes_per_worker": 1,
                "endpoint_type": "sync",
            },
            id="cpu only single node",
        ),
        pytest.param({"cpus": "500m", "memory": "1.5e9"}, id="fractional quantities"),
        # An absolute checkpoint path needs --checkpoint-roots: see
        # tests/security/test_checkpoint_roots.py, which accepts one under a root.
        pytest.param({"min_workers": 0}, id="scale to zero"),
    ],
)
def test_edge_values_inside_the_rules_are_accepted(
    alice: httpx.Client, overrides: dict[str, Any]
) -> None:
    base = seed_body() if overrides.get("name", "").startswith("a") else endpoint_body()
    body = {k: v for k, v in {**base, **overrides}.items() if v is not None}
    response = alice.post("/v1/llm/model-endpoints", json=body)
    assert response.status_code == 200, response.text
    assert alice.delete(f"/v1/llm/model-endpoints/{body['name']}").status_code == 200
