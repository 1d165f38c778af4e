"""Create, list, get, update and delete endpoints over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.builders import endpoint_body, seed_body, unique_name


def create(client: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return client.post("/v1/llm/model-endpoints", json=body)


class TestCreate:
    def test_the_runbook_body_creates_a_multinode_sglang_endpoint(
        self, alice: httpx.Client
    ) -> None:
        name = unique_name("deepseek-r1")
        response = create(alice, seed_body(name=name))
        assert response.status_code == 200, response.text
        assert response.json()["endpoint_creation_task_id"].startswith("op_")

        endpoint = alice.get(f"/v1/llm/model-endpoints/{name}").json()
        assert endpoint["name"] == name
        assert endpoint["inference_framework"] == "sglang"
        assert endpoint["inference_framework_image_tag"] == "v0.5.21"
        assert endpoint["num_shards"] == 8
        # checkpoint_path was given only in metadata._llm; it is adopted, not dropped.
        assert endpoint["checkpoint_path"] == (
            "s3://scale-ml/models/hf-synced-weights/deepseek-ai/DeepSeek-R1"
        )
        spec = endpoint["spec"]
        assert spec["endpoint_type"] == "streaming"
        assert spec["labels"] == {"team": "infra", "product": "inference.llm_model_zoo"}
        assert spec["metadata"]["_llm"]["checkpoint_path"] == endpoint["checkpoint_path"]
        assert spec["resource_state"] == {
            "cpus": 160,
            "gpus": 8,
            "gpu_type": "nvidia-hopper-h100",
            "memory": "800Gi",
            "storage": "900Gi",
            "nodes_per_worker": 2,
            "optimize_costs": None,
        }
        assert spec["deployment_state"] == {
            "min_workers": 1,
            "max_workers": 1,
            "per_worker": 1,
            "concurrent_requests_per_worker": 256,  # the forwarder's default limit
            "available_workers": 0,
            "unavailable_workers": 0,
        }

    def test_a_new_endpoint_waits_honestly_for_a_backend(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        endpoint = alice.get(f"/v1/llm/model-endpoints/{body['name']}").json()
        assert endpoint["status"] == "UPDATE_PENDING"
        assert endpoint["spec"]["status_reason"]
        assert endpoint["spec"]["created_at"] and endpoint["spec"]["last_updated_at"]

    def test_launch_optional_fields_and_engine_args_are_kept(self, alice: httpx.Client) -> None:
        body = endpoint_body(
            source="hugging_face",
            quantize="awq",
            checkpoint_path="hf://meta-llama/Meta-Llama-3-8B-Instruct",
            chat_template_override="{{ messages }}",
            post_inference_hooks=[],  # the client's values; non-empty ones are refused
            default_callback_url=None,
            public_inference=False,
            prewarm=True,
            optimize_costs=False,
            billing_tags={"cost-center": "ml"},
            high_priority=False,
            engine_args={"max-model-len": 8192, "override-generation-config": {"temperature": 0.5}},
        )
        assert create(alice, body).status_code == 200
        endpoint = alice.get(f"/v1/llm/model-endpoints/{body['name']}").json()
        assert endpoint["quantize"] == "awq"
        assert endpoint["chat_template_override"] == "{{ messages }}"
        assert endpoint["spec"]["post_inference_hooks"] is None
        assert endpoint["spec"]["engine_args"]["override-generation-config"] == {"temperature": 0.5}

    def test_a_duplicate_name_is_409_and_the_first_endpoint_is_untouched(
        self, alice: httpx.Client
    ) -> None:
        body = endpoint_body()
        assert create(alice, body).status_code == 200
        again = create(alice, {**body, "model_name": "other-model"})
        assert again.status_code == 409
        assert body["name"] in again.json()["detail"]
        endpoint = alice.get(f"/v1/llm/model-endpoints/{body['name']}").json()
        assert endpoint["model_name"] == "llama-3-8b-instruct"


class TestListAndGet:
    def test_list_returns_the_owners_endpoints_and_filters_by_name(
        self, alice: httpx.Client
    ) -> None:
        first, second = endpoint_body(), endpoint_body()
        create(alice, first)
        create(alice, second)
        names = {e["name"] for e in alice.get("/v1/llm/model-endpoints").json()["model_endpoints"]}
        assert {first["name"], second["name"]} <= names
        only = alice.get("/v1/llm/model-endpoints", params={"name": first["name"]}).json()
        assert [e["name"] for e in only["model_endpoints"]] == [first["name"]]

    def test_an_unknown_endpoint_is_404(self, alice: httpx.Client) -> None:
        response = alice.get("/v1/llm/model-endpoints/no-such-endpoint")
        assert response.status_code == 404
        assert "no-such-endpoint" in response.json()["detail"]


class TestUpdate:
    def test_mutable_fields_change_and_status_returns_to_pending(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        path = f"/v1/llm/model-endpoints/{body['name']}"
        before = alice.get(path).json()
        response = alice.put(
            path,
            json={
                "min_workers": 2,
                "max_workers": 4,
                "inference_framework_image_tag": "v0.11.1",
                "checkpoint_path": "s3://bucket/new-weights",
                "gpus": 2,
                "gpu_type": "nvidia-ampere-a100",
                "memory": "64Gi",
                "labels": {"team": "research"},
                "metadata": {"owner-email": "a@example.invalid"},
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["endpoint_creation_task_id"].startswith("op_")
        after = alice.get(path).json()
        assert after["status"] == "UPDATE_PENDING"
        assert after["inference_framework_image_tag"] == "v0.11.1"
        assert after["checkpoint_path"] == "s3://bucket/new-weights"
        assert after["num_shards"] == 2  # follows gpus
        assert after["spec"]["deployment_state"]["max_workers"] == 4
        assert after["spec"]["resource_state"]["gpu_type"] == "nvidia-ampere-a100"
        assert after["spec"]["labels"] == {"team": "research"}
        assert after["spec"]["metadata"]["owner-email"] == "a@example.invalid"
        assert after["spec"]["last_updated_at"] > before["spec"]["last_updated_at"]

    def test_an_immutable_field_is_refused_by_name_and_nothing_changes(
        self, alice: httpx.Client
    ) -> None:
        body = seed_body(name=unique_name("seed"))
        create(alice, body)
        path = f"/v1/llm/model-endpoints/{body['name']}"
        response = alice.put(path, json={"nodes_per_worker": 4, "min_workers": 1})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "nodes_per_worker"
        assert "cannot be changed" in response.json()["detail"]
        assert alice.get(path).json()["spec"]["resource_state"]["nodes_per_worker"] == 2

    def test_sending_an_immutable_field_unchanged_is_accepted(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        response = alice.put(
            f"/v1/llm/model-endpoints/{body['name']}",
            json={"inference_framework": "vllm", "per_worker": 8},
        )
        assert response.status_code == 200, response.text

    def test_an_update_that_breaks_a_rule_changes_nothing(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        path = f"/v1/llm/model-endpoints/{body['name']}"
        response = alice.put(path, json={"min_workers": 5, "max_workers": 3})
        assert response.status_code == 422
        assert "max_workers" in [e["field"] for e in response.json()["errors"]]
        assert alice.get(path).json()["spec"]["deployment_state"]["min_workers"] == 1

    def test_an_unknown_update_field_is_422(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        response = alice.put(f"/v1/llm/model-endpoints/{body['name']}", json={"min_wrokers": 2})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "min_wrokers"

    def test_updating_a_missing_endpoint_is_404(self, alice: httpx.Client) -> None:
        assert (
            alice.put("/v1/llm/model-endpoints/missing", json={"min_workers": 1}).status_code == 404
        )


class TestDelete:
    def test_delete_removes_the_endpoint_and_frees_the_name(self, alice: httpx.Client) -> None:
        body = endpoint_body()
        create(alice, body)
        response = alice.delete(f"/v1/llm/model-endpoints/{body['name']}")
        assert response.status_code == 200
        assert response.json() == {"deleted": True}
        assert alice.get(f"/v1/llm/model-endpoints/{body['name']}").status_code == 404
        assert create(alice, body).status_code == 200

    def test_deleting_a_missing_endpoint_is_404(self, alice: httpx.Client) -> None:
        assert alice.delete("/v1/llm/model-endpoints/missing").status_code == 404


def test_the_server_publishes_health_and_openapi(alice: httpx.Client) -> None:
    assert alice.get("/healthz").json() == {"status": "ok"}
    assert alice.get("/readyz").json() == {"status": "ok"}
    document = alice.get("/openapi.json").json()
    assert "/v1/llm/model-endpoints" in document["paths"]
    assert "/v1/llm/model-endpoints/{name}" in document["paths"]
