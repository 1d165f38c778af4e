"""Sequential completions through the API reach every ready group of a local endpoint
(simulated engines), counted by each group's forwarder (`llm_launch_requests_total`); a
cache-aware endpoint's conversation stays on the group whose prefix cache holds it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.builders import endpoint_body, unique_name
from tests.support.local_groups import kill_marked, wait_for
from tests.support.server import simulated_local_server

KEY = "routing-key-0123456789abcdef"
MARKER = "LLM_LAUNCH_TEST_MARKER"
REQUESTS = 40


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("routing")
    env = {"LLM_LAUNCH_API_KEYS": f"alice:{KEY}", "LLM_LAUNCH_SIM_TTFT_MS": "5",
           "LLM_LAUNCH_SIM_TPOT_MS": "1", MARKER: str(data_dir),
           # A prefill cost switches the simulated prefix cache on (cached_tokens).
           "LLM_LAUNCH_SIM_PREFILL_US_PER_TOKEN": "1",
           "LLM_LAUNCH_PASS_ENV": MARKER}  # fmt: skip
    server = simulated_local_server(data_dir, env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60) as client:
            yield client
    finally:
        server.stop()
        kill_marked(MARKER, data_dir)


def requests_total(forwarder_url: str) -> int:
    text = httpx.get(f"{forwarder_url}/metrics", timeout=10).text
    match = re.search(r"^llm_launch_requests_total (\d+)$", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1))


def test_sequential_completions_reach_both_groups_of_a_two_group_endpoint(
    client: httpx.Client,
) -> None:
    name = unique_name("spread")
    body = endpoint_body(name=name, min_workers=2, max_workers=2)
    assert client.post("/v1/llm/model-endpoints", json=body).status_code == 200
    endpoint = wait_for(
        client,
        name,
        lambda e: (
            e["status"] == "READY" and e["spec"]["deployment_state"]["available_workers"] == 2
        ),
    )
    forwarders = endpoint["spec"]["destination"].split(",")
    assert len(forwarders) == 2
    before = {url: requests_total(url) for url in forwarders}

    prompt = {"prompt": "Say hello", "max_new_tokens": 2, "temperature": 0.0}
    for _ in range(REQUESTS):  # one at a time: every group is idle when the next is routed
        answer = client.post(
            "/v1/llm/completions-sync", params={"model_endpoint_name": name}, json=prompt
        )
        assert answer.status_code == 200, answer.text

    served = {url: requests_total(url) - before[url] for url in forwarders}
    assert sum(served.values()) == REQUESTS, served
    # Fair draws give each group about 20; at least 5 each fails about once in 10^7 runs,
    # and a picker that breaks ties by order gives 40 and 0.
    assert min(served.values()) >= 5, served
    assert client.delete(f"/v1/llm/model-endpoints/{name}").status_code == 200


def test_a_cache_aware_conversation_finds_its_whole_history_cached_at_every_turn(
    client: httpx.Client,
) -> None:
    name = unique_name("sticky")
    body = endpoint_body(name=name, min_workers=2, max_workers=2, routing_policy="cache_aware")
    assert client.post("/v1/llm/model-endpoints", json=body).status_code == 200
    wait_for(
        client,
        name,
        lambda e: (
            e["status"] == "READY" and e["spec"]["deployment_state"]["available_workers"] == 2
        ),
    )
    messages = [{"role": "system", "content": "You are a patient guide. " * 200}]
    cached = []
    for turn in range(6):  # least-in-flight's random draws keep all 5 later turns: 1 in 32
        messages.append({"role": "user", "content": f"Question {turn}: and then what?"})
        answer = client.post(
            "/v2/chat/completions", json={"model": name, "messages": messages, "max_tokens": 4}
        )
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        cached.append((usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]))
        messages.append(answer.json()["choices"][0]["message"])

    # Every later turn's prompt begins with the previous turn's whole prompt, which the group
    # that served it holds: it is found cached only if the turn went back to that group.
    for (before, _), (_, now_cached) in itertools.pairwise(cached):
        assert now_cached >= before, cached
    assert client.delete(f"/v1/llm/model-endpoints/{name}").status_code == 200
