"""GET and list answer in Launch's full shape, with honest values, and list takes `order_by`.

The answers are parsed with the official Launch client's own response models
(`llmengine.data_types`), as `Model.get` and `Model.list` parse them. That client's
endpoint-type enum knows only "streaming" (and its framework enum no "sglang"), so the
endpoints it reads here are streaming vLLM ones; llm-launch's streaming endpoints serve
sync calls too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmengine.data_types import GetLLMEndpointResponse, ListLLMEndpointsResponse
from llmengine.data_types.rest import (
    GetModelEndpointResponse,
    ModelEndpointDeploymentState,
    ModelEndpointResourceState,
)

from llm_launch.engines.options import PlanOptions
from tests.builders import endpoint_body, seed_body, unique_name
from tests.fakes.kube_api import FakeKubeApi
from tests.support.kubernetes_server import serving_on_kubernetes
from tests.support.local_groups import forwarder_url, kill_marked, wait_for
from tests.support.server import simulated_local_server
from tests.unit.kubernetes import k8s_name

PATH = "/v1/llm/model-endpoints"
KEY = "responses-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"  # on the local groups, so that teardown finds them


def created(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    """Create a streaming vLLM endpoint (what the Launch client can read) and GET it."""
    body = endpoint_body(**overrides)
    response = client.post(PATH, json=body)
    assert response.status_code == 200, response.text
    endpoint: dict[str, Any] = client.get(f"{PATH}/{body['name']}").json()
    return endpoint


def listed_names(client: httpx.Client, mine: set[str], **params: str) -> list[str]:
    response = client.get(PATH, params=params)
    assert response.status_code == 200, response.text
    return [e["name"] for e in response.json()["model_endpoints"] if e["name"] in mine]


class TestLaunchShape:
    def test_the_launch_client_parses_a_get_and_a_list_answer(self, alice: httpx.Client) -> None:
        endpoint = created(alice)
        parsed = GetLLMEndpointResponse.parse_obj(endpoint)
        assert parsed.name == endpoint["name"]
        assert parsed.spec is not None and parsed.spec.deployment_state is not None
        assert parsed.spec.deployment_state.min_workers == 1
        # Filtered to this endpoint: the client's framework enum has no "sglang", so it cannot
        # parse a list holding an SGLang endpoint (other tests share this owner's store).
        answer = alice.get(PATH, params={"name": endpoint["name"]}).json()
        listed = ListLLMEndpointsResponse.parse_obj(answer)
        assert endpoint["name"] in {e.name for e in listed.model_endpoints}

    def test_every_field_launch_defines_is_in_the_answer(self, alice: httpx.Client) -> None:
        endpoint = created(alice)
        spec = endpoint["spec"]
        # Present, not merely defaulted by the client's parser (a null is an answer too).
        assert set(GetLLMEndpointResponse.__fields__) - {"inference_framework_tag"} <= set(endpoint)
        assert "inference_framework_image_tag" in endpoint  # Launch server's name for it
        assert set(GetModelEndpointResponse.__fields__) <= set(spec)
        assert set(ModelEndpointDeploymentState.__fields__) == set(spec["deployment_state"])
        assert set(ModelEndpointResourceState.__fields__) == set(spec["resource_state"])

    def test_launch_fields_llm_launch_has_no_use_for_are_null(self, alice: httpx.Client) -> None:
        spec = created(alice)["spec"]
        for field in ("aws_role", "results_s3_bucket", "num_queued_items", "default_callback_auth"):
            assert spec[field] is None, field

    def test_the_stored_launch_common_fields_are_returned(self, alice: httpx.Client) -> None:
        endpoint = created(
            alice,
            billing_tags={"cost-center": "ml"},
            prewarm=True,
            high_priority=True,
            optimize_costs=False,
            public_inference=False,
        )
        spec = endpoint["spec"]
        assert spec["billing_tags"] == {"cost-center": "ml"}
        assert (spec["prewarm"], spec["high_priority"], spec["optimize_costs"]) == (
            True,
            True,
            False,
        )
        assert spec["resource_state"]["optimize_costs"] is False
        assert spec["public_inference"] is False
        assert spec["engine_args"] == {} and spec["status_reason"]

    def test_with_no_backend_nothing_is_a_destination_and_the_limit_is_the_default(
        self, alice: httpx.Client
    ) -> None:
        spec = created(alice)["spec"]
        assert spec["destination"] == ""
        assert spec["deployment_name"] is None
        limit = spec["deployment_state"]["concurrent_requests_per_worker"]
        assert limit == PlanOptions().forwarder_max_concurrency


class TestBundleName:
    def test_the_bundle_name_names_the_endpoint_framework_and_image_tag(
        self, alice: httpx.Client
    ) -> None:
        endpoint = created(alice, inference_framework_image_tag="v0.31.0")
        pattern = rf"{re.escape(endpoint['name'])}-vllm-v0\.31\.0-[0-9a-f]{{8}}"
        assert re.fullmatch(pattern, endpoint["spec"]["bundle_name"])

    def test_an_update_that_changes_what_runs_renames_the_bundle(self, alice: httpx.Client) -> None:
        endpoint = created(alice)
        path = f"{PATH}/{endpoint['name']}"
        before = endpoint["spec"]["bundle_name"]
        assert alice.put(path, json={"engine_args": {"max-model-len": 4096}}).status_code == 200
        after = alice.get(path).json()["spec"]["bundle_name"]
        assert after != before
        assert alice.put(path, json={"engine_args": {}}).status_code == 200
        assert alice.get(path).json()["spec"]["bundle_name"] == before  # the same plan again

    def test_force_bundle_recreation_renames_the_bundle(self, alice: httpx.Client) -> None:
        endpoint = created(alice)
        path = f"{PATH}/{endpoint['name']}"
        assert alice.put(path, json={"force_bundle_recreation": True}).status_code == 200
        assert alice.get(path).json()["spec"]["bundle_name"] != endpoint["spec"]["bundle_name"]

    def test_scaling_keeps_the_bundle(self, alice: httpx.Client) -> None:
        endpoint = created(alice)
        path = f"{PATH}/{endpoint['name']}"
        changes = {"min_workers": 2, "max_workers": 3, "per_worker": 9, "labels": {"a": "b"}}
        assert alice.put(path, json=changes).status_code == 200
        assert alice.get(path).json()["spec"]["bundle_name"] == endpoint["spec"]["bundle_name"]


class TestOrderBy:
    @pytest.fixture
    def three(self, alice: httpx.Client) -> list[str]:
        """Three endpoints, created in an order that is not their names' order."""
        base = f"ord-{uuid.uuid4().hex[:8]}"
        names = [f"{base}-c", f"{base}-a", f"{base}-b"]
        for name in names:
            assert alice.post(PATH, json=endpoint_body(name=name)).status_code == 200
        return names

    def test_newest_lists_the_latest_created_first(
        self, alice: httpx.Client, three: list[str]
    ) -> None:
        assert listed_names(alice, set(three), order_by="newest") == three[::-1]

    def test_oldest_lists_in_creation_order_and_is_the_default(
        self, alice: httpx.Client, three: list[str]
    ) -> None:
        assert listed_names(alice, set(three), order_by="oldest") == three
        assert listed_names(alice, set(three)) == three

    def test_alphabetical_lists_by_name(self, alice: httpx.Client, three: list[str]) -> None:
        assert listed_names(alice, set(three), order_by="alphabetical") == sorted(three)

    def test_an_unknown_order_is_a_422_naming_order_by(self, alice: httpx.Client) -> None:
        response = alice.get(PATH, params={"order_by": "random"})
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error["field"].endswith("order_by")
        assert all(word in error["message"] for word in ("newest", "oldest", "alphabetical"))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[httpx.Client]:
    env = {"LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
           MARKER: str(tmp_path), "LLM_LAUNCH_PASS_ENV": MARKER}  # fmt: skip
    server = simulated_local_server(tmp_path, env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60) as client:
            yield client
    finally:
        server.stop()
        # The local backend's groups outlive the server (as across a restart): end them.
        kill_marked(MARKER, tmp_path)


def test_locally_the_destination_is_the_forwarder_of_the_endpoint_s_group(
    local: httpx.Client, tmp_path: Path
) -> None:
    body = endpoint_body(name=unique_name("local"))
    assert local.post(PATH, json=body).status_code == 200
    endpoint = wait_for(local, body["name"], lambda e: e["status"] == "READY")
    recorded = forwarder_url(tmp_path, endpoint["id"])  # the backend's own group record
    assert recorded is not None
    assert endpoint["spec"]["destination"] == recorded
    assert endpoint["spec"]["deployment_name"] is None
    assert endpoint["spec"]["deployment_state"]["concurrent_requests_per_worker"] == (
        PlanOptions().forwarder_max_concurrency
    )
    parsed = GetLLMEndpointResponse.parse_obj(endpoint)
    assert parsed.spec is not None and parsed.spec.destination == recorded


def test_locally_several_groups_are_listed_by_their_forwarders(
    local: httpx.Client, tmp_path: Path
) -> None:
    body = endpoint_body(name=unique_name("local"), min_workers=2, max_workers=2)
    assert local.post(PATH, json=body).status_code == 200
    endpoint = wait_for(local, body["name"], lambda e: e["status"] == "READY")
    urls = [forwarder_url(tmp_path, endpoint["id"], group) for group in (0, 1)]
    assert sorted(endpoint["spec"]["destination"].split(",")) == sorted(map(str, urls))


def test_on_kubernetes_the_destination_is_the_leader_service_and_the_deployment_the_lws(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    lws = k8s_name("deepseek-r1")  # alice's
    with serving_on_kubernetes(kube_api, tmp_path) as client:
        assert client.post(PATH, json=seed_body()).status_code == 200
        endpoint = wait_for(
            client, "deepseek-r1", lambda e: f"{lws}-leader" in kube_api.names("services")
        )
        assert kube_api.get("leaderworkersets", lws) is not None
        assert endpoint["spec"]["deployment_name"] == lws
        assert endpoint["spec"]["destination"] == f"http://{lws}-leader.default.svc"
        limit = endpoint["spec"]["deployment_state"]["concurrent_requests_per_worker"]
        assert limit == PlanOptions().forwarder_max_concurrency
