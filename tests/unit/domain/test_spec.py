"""build_spec and apply_update: defaults, the _llm mirror, immutable fields."""

from __future__ import annotations

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.spec import EndpointSpec
from llm_launch.domain.spec_builder import apply_update, build_spec
from tests.builders import endpoint_body, seed_body

CATALOG = load_hardware_catalog()


def fields_of(error: pytest.ExceptionInfo[InvalidRequest]) -> set[str]:
    return {e.field for e in error.value.errors}


def test_the_seed_builds_a_two_node_sglang_spec_using_16_gpus() -> None:
    spec = build_spec(seed_body(), CATALOG)
    assert spec.is_multinode
    assert spec.gpus_per_group == 16
    assert spec.checkpoint_path == "s3://scale-ml/models/hf-synced-weights/deepseek-ai/DeepSeek-R1"
    assert "_llm" not in spec.metadata


def test_num_shards_defaults_to_gpus_and_framework_to_vllm() -> None:
    body = endpoint_body(gpus=4)
    del body["num_shards"], body["inference_framework"]
    spec = build_spec(body, CATALOG)
    assert (spec.num_shards, spec.inference_framework) == (4, "vllm")


def test_missing_required_fields_are_all_named() -> None:
    with pytest.raises(InvalidRequest) as error:
        build_spec({"name": "x"}, CATALOG)
    assert {"model_name", "cpus", "memory", "gpus", "min_workers"} <= fields_of(error)


def test_a_spec_survives_a_round_trip_through_its_dict() -> None:
    spec = build_spec(endpoint_body(engine_args={"cuda-graph-sizes": [1, "b c"]}), CATALOG)
    assert EndpointSpec.from_dict(spec.to_dict()) == spec


class TestApplyUpdate:
    def test_unchanged_immutable_fields_are_fine_and_changed_ones_are_named(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        assert (
            apply_update(spec, {"nodes_per_worker": 2, "min_workers": 0}, CATALOG).min_workers == 0
        )
        with pytest.raises(InvalidRequest) as error:
            apply_update(spec, {"inference_framework": "vllm", "endpoint_type": "sync"}, CATALOG)
        assert fields_of(error) == {"inference_framework", "endpoint_type"}

    def test_num_shards_follows_gpus_when_it_tracked_them(self) -> None:
        spec = build_spec(endpoint_body(gpus=2, num_shards=2), CATALOG)
        assert apply_update(spec, {"gpus": 4}, CATALOG).num_shards == 4

    def test_a_null_in_an_update_changes_nothing_as_launchs_client_sends_every_field(
        self,
    ) -> None:
        spec = build_spec(endpoint_body(quantize="awq", labels={"team": "infra"}), CATALOG)
        nulls = {"quantize": None, "memory": None, "gpu_type": None, "labels": None}
        updated = apply_update(spec, {**nulls, "min_workers": 0}, CATALOG)
        assert updated == build_spec(
            endpoint_body(name=spec.name, quantize="awq", min_workers=0), CATALOG
        )

    def test_the_llm_mirror_read_back_from_get_can_be_sent_unchanged(self) -> None:
        spec = build_spec(seed_body(), CATALOG)
        metadata = {"note": "x", "_llm": spec.llm_metadata()}
        updated = apply_update(spec, {"metadata": metadata}, CATALOG)
        assert updated.metadata == {"note": "x"}
        assert updated.checkpoint_path == spec.checkpoint_path
