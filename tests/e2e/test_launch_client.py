"""The official Launch client (`scale-llm-engine`, package `llmengine`) works unchanged.

A user who brings Launch client code points it at llm-launch (`LLM_ENGINE_BASE_PATH`, an
API key) and runs it as it is: `Model.create` (vLLM, single-node and multi-node),
`Model.get`, `Model.list`, `Model.update`, `Completion.create` (sync, streamed, async) and
`Model.delete`, against a real server whose endpoints run as simulated local groups.
The client sends every Launch field of its request models (most of them null or false) and
parses our answers with its own models, so a field we refuse or a field we leave out of
an answer fails here exactly as it failed for users.

What the client cannot do: its framework enum has no `sglang`, so SGLang endpoints are
created over HTTP or with `llm-launch`; its endpoint-type enum knows only "streaming", so it
cannot parse a "sync" endpoint (llm-launch's streaming endpoints serve both kinds of calls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import llmengine
import pytest
from llmengine import Completion, Model
from llmengine.api_engine import set_api_key, set_base_path
from llmengine.data_types import LLMInferenceFramework

from tests.support.deletes import wait_until_deleted
from tests.support.server import RunningServer, simulated_local_server

KEY = "launch-client-key-0123456789"
SERVER_ENV = {
    "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
    "LLM_LAUNCH_SIM_TTFT_MS": "1",
    "LLM_LAUNCH_SIM_TPOT_MS": "1",
}
VLLM_TAG = "v0.31.0"


def _wait_deleted(server: RunningServer, name: str) -> None:
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as client:
        wait_until_deleted(client, name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("launch-client")
    running = simulated_local_server(data_dir, SERVER_ENV).start()
    set_base_path(f"{running.url}/")  # the client joins resource names onto it
    set_api_key(KEY)
    try:
        yield running
    finally:
        set_base_path(None)
        set_api_key(None)
        running.stop()


def _wait_ready(name: str, timeout_s: float = 90) -> llmengine.GetLLMEndpointResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        endpoint = Model.get(name)
        if endpoint.status == "READY" or time.monotonic() > deadline:
            assert endpoint.status == "READY", endpoint.spec
            return endpoint
        time.sleep(0.3)


def _create(name: str, *, nodes: int, gpus: int, **extra: object) -> None:
    Model.create(
        name=name,
        model="llama-3-8b-instruct",
        inference_framework_image_tag=VLLM_TAG,
        inference_framework=LLMInferenceFramework.VLLM,
        num_shards=gpus,
        cpus=8,
        memory="32Gi",
        storage="40Gi",
        gpus=gpus,
        gpu_type="nvidia-hopper-h100",
        nodes_per_worker=nodes,
        min_workers=1,
        max_workers=1,
        per_worker=4,
        labels={"team": "infra"},
        **extra,
    )


def test_the_client_creates_reads_serves_updates_and_deletes_a_single_node_vllm_endpoint(
    server: RunningServer,
) -> None:
    _create("client-single", nodes=1, gpus=1, max_model_len=4096)
    endpoint = _wait_ready("client-single")
    assert endpoint.name == "client-single"
    assert endpoint.inference_framework == "vllm"
    assert endpoint.spec is not None and endpoint.spec.deployment_state is not None
    assert endpoint.spec.deployment_state.concurrent_requests_per_worker > 0
    assert endpoint.spec.labels == {"team": "infra"}
    assert endpoint.spec.destination  # where traffic goes: the group's forwarder

    listed = {e.name for e in Model.list().model_endpoints}
    assert "client-single" in listed

    sync = Completion.create(model="client-single", prompt="Hello", max_new_tokens=5)
    assert sync.output is not None and sync.output.num_completion_tokens == 5

    chunks = list(
        Completion.create(model="client-single", prompt="Hi", max_new_tokens=4, stream=True)
    )
    assert chunks and chunks[-1].output is not None and chunks[-1].output.finished

    async_answer = asyncio.run(
        Completion.acreate(model="client-single", prompt="Hey", max_new_tokens=3)
    )
    assert async_answer.output is not None and async_answer.output.num_completion_tokens == 3

    Model.update("client-single", max_workers=2, per_worker=8)
    updated = Model.get("client-single")
    assert updated.spec is not None and updated.spec.deployment_state is not None
    assert updated.spec.deployment_state.max_workers == 2
    assert updated.spec.deployment_state.per_worker == 8

    assert Model.delete("client-single").deleted
    assert "client-single" not in {e.name for e in Model.list().model_endpoints}
    _wait_deleted(server, "client-single")


def test_the_client_creates_a_multinode_vllm_endpoint_that_serves(
    server: RunningServer,
) -> None:
    _create("client-multi", nodes=2, gpus=8, tensor_parallel_size=8, pipeline_parallel_size=2)
    endpoint = _wait_ready("client-multi")
    assert endpoint.spec is not None and endpoint.spec.resource_state is not None
    assert endpoint.spec.resource_state.nodes_per_worker == 2
    answer = Completion.create(model="client-multi", prompt="Hello", max_new_tokens=2)
    assert answer.output is not None and answer.output.num_completion_tokens == 2
    assert Model.delete("client-multi").deleted
    _wait_deleted(server, "client-multi")


def test_the_client_sees_a_clear_error_for_a_field_llm_launch_refuses(
    server: RunningServer,
) -> None:
    with pytest.raises(Exception, match="tensor_parallel_size") as refused:
        _create("client-bad", nodes=1, gpus=1, tensor_parallel_size=4)
    assert "1" in str(refused.value)
    assert "client-bad" not in {e.name for e in Model.list().model_endpoints}
