"""MIG GPU types (Launch's nvidia-hopper-h100-1g20gb and -3g40gb): an engine runs on one
slice on one node, so more GPUs or more nodes are refused, saying why and what to use."""

from __future__ import annotations

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import FieldError, InvalidRequest
from llm_launch.domain.spec_builder import apply_update, build_spec
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()
MIG_TYPES = ["nvidia-hopper-h100-1g20gb", "nvidia-hopper-h100-3g40gb"]


def refusals(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as raised:
        build_spec(body, CATALOG)
    return {e.field: e.message for e in raised.value.errors}


@pytest.mark.parametrize("gpu_type", MIG_TYPES)
def test_one_slice_on_one_node_is_a_valid_endpoint(gpu_type: str) -> None:
    spec = build_spec(endpoint_body(gpu_type=gpu_type, gpus=1), CATALOG)
    assert (spec.gpu_type, spec.gpus, spec.nodes_per_worker) == (gpu_type, 1, 1)


@pytest.mark.parametrize("gpu_type", MIG_TYPES)
def test_two_slices_for_tensor_parallelism_are_refused_saying_why(gpu_type: str) -> None:
    errors = refusals(endpoint_body(gpu_type=gpu_type, gpus=2, num_shards=2))
    assert set(errors) == {"gpus"}
    message = errors["gpus"]
    assert message.startswith(f"must be 1 for gpu_type {gpu_type} (got 2)")
    assert "NVLink" in message and "NCCL" in message
    assert "gpu_type nvidia-hopper-h100)" in message  # what to use instead


def test_a_slice_per_node_across_nodes_is_refused_saying_why() -> None:
    body = seed_body(gpu_type="nvidia-hopper-h100-1g20gb", gpus=1, num_shards=1, metadata={})
    errors = refusals(body)
    assert set(errors) == {"nodes_per_worker"}
    assert errors["nodes_per_worker"].startswith(
        "must be 1 for gpu_type nvidia-hopper-h100-1g20gb (got 2)"
    )
    assert "4" in errors["nodes_per_worker"] and "32" in errors["nodes_per_worker"]


def test_the_seed_on_a_slice_names_both_gpus_and_nodes() -> None:
    errors = refusals(seed_body(gpu_type="nvidia-hopper-h100-3g40gb"))
    assert set(errors) == {"gpus", "nodes_per_worker"}


def test_an_update_to_more_slices_is_refused_and_changes_nothing() -> None:
    spec = build_spec(endpoint_body(gpu_type="nvidia-hopper-h100-1g20gb", gpus=1), CATALOG)
    with pytest.raises(InvalidRequest) as raised:
        apply_update(spec, {"gpus": 4, "num_shards": 4}, CATALOG)
    assert [e.field for e in raised.value.errors] == ["gpus"]
    assert spec.gpus == 1


def test_whole_h100s_keep_their_own_rule() -> None:
    build_spec(seed_body(), CATALOG)  # 8 GPUs x 2 nodes: fine on whole GPUs
    errors = refusals(seed_body(gpus=16, num_shards=16))
    assert errors["gpus"] == "nvidia-hopper-h100 nodes have at most 8 GPUs (got 16)"


def test_an_unknown_gpu_type_lists_every_known_one_the_mig_types_included() -> None:
    message = refusals(endpoint_body(gpu_type="nvidia-hopper-h100-2g20gb"))["gpu_type"]
    for name in MIG_TYPES:
        assert name in message


def test_the_rule_names_each_field_a_slice_allows_only_one_of() -> None:
    gpu = CATALOG.get("nvidia-hopper-h100-1g20gb")
    assert gpu is not None
    assert CATALOG.mig_problems(gpu, 1, 1) == []
    problems = CATALOG.mig_problems(gpu, 2, 3)
    assert [p.field for p in problems] == ["gpus", "nodes_per_worker"]
    assert all(isinstance(p, FieldError) for p in problems)
