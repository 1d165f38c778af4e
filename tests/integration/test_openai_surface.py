"""The OpenAI surface through the real `openai` client and a real local server with
simulated engines: answers carry the `model` the caller sent (the endpoint's name, not its
model_name), and `models.list()` / `models.retrieve()` show each caller their endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.builders import endpoint_body, unique_name
from tests.support.local_groups import kill_marked, wait_for
from tests.support.server import RunningServer, simulated_local_server

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef0000"
MARKER = "LLM_LAUNCH_TEST_MARKER"
PATH = "/v1/llm/model-endpoints"


class Served:
    """A running server and alice's READY endpoint, named unlike its model_name."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, headers={"x-api-key": ALICE}, timeout=60)
        self.name = unique_name("chat")
        self.body = endpoint_body(name=self.name, min_workers=1, max_workers=1)
        assert self.body["model_name"] != self.name
        assert self.http.post(PATH, json=self.body).status_code == 200
        self.endpoint = wait_for(self.http, self.name, lambda e: e["status"] == "READY")

    def openai(self, key: str = ALICE) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v2", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("openai-surface")
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{ALICE},bob:{BOB}",
        "LLM_LAUNCH_SIM_TTFT_MS": "5",
        "LLM_LAUNCH_SIM_TPOT_MS": "2",
        # Spawned processes get an allow-listed environment: pass the marker on purpose.
        MARKER: str(data_dir),
        "LLM_LAUNCH_PASS_ENV": MARKER,
    }
    server = simulated_local_server(data_dir, env).start()
    try:
        yield Served(server)
    finally:
        server.stop()
        kill_marked(MARKER, data_dir)


MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


def test_a_chat_answer_carries_the_endpoint_name_the_caller_sent(served: Served) -> None:
    chat = served.openai().chat.completions.create(
        model=served.name,
        messages=MESSAGES,
        max_tokens=4,
    )
    assert chat.choices[0].message.content
    assert chat.model == served.name


def test_every_streamed_chat_chunk_carries_the_endpoint_name(served: Served) -> None:
    stream = served.openai().chat.completions.create(
        model=served.name,
        messages=MESSAGES,
        max_tokens=4,
        stream=True,
    )
    models = {chunk.model for chunk in stream}
    assert models == {served.name}


def test_a_completion_answer_carries_the_endpoint_name_the_caller_sent(served: Served) -> None:
    completion = served.openai().completions.create(model=served.name, prompt="Hi", max_tokens=4)
    assert completion.choices[0].text
    assert completion.model == served.name


def test_every_streamed_completion_chunk_carries_the_endpoint_name(served: Served) -> None:
    stream = served.openai().completions.create(
        model=served.name, prompt="Hi", max_tokens=4, stream=True
    )
    models = {chunk.model for chunk in stream}
    assert models == {served.name}


def test_models_list_shows_the_caller_s_endpoints_as_openai_models(served: Served) -> None:
    (model,) = [m for m in served.openai().models.list() if m.id == served.name]
    assert model.object == "model"
    assert model.owned_by == "alice"
    spec = served.endpoint["spec"]
    assert isinstance(spec, dict)
    created_at = datetime.fromisoformat(spec["created_at"])  # Launch's spec.created_at
    assert model.created == int(created_at.timestamp())


def test_models_retrieve_gives_the_caller_s_endpoint_by_name(served: Served) -> None:
    model = served.openai().models.retrieve(served.name)
    assert (model.id, model.object, model.owned_by) == (served.name, "model", "alice")


def test_each_owner_lists_and_retrieves_only_their_own_endpoints(served: Served) -> None:
    bob_http = httpx.Client(base_url=served.server.url, headers={"x-api-key": BOB}, timeout=60)
    bobs = endpoint_body(name=unique_name("bob"))
    assert bob_http.post(PATH, json=bobs).status_code == 200
    bob = served.openai(BOB)
    bob_ids = [m.id for m in bob.models.list()]
    assert bob_ids == [bobs["name"]]
    assert all(m.owned_by == "bob" for m in bob.models.list())
    assert bobs["name"] not in [m.id for m in served.openai().models.list()]
    with pytest.raises(openai.NotFoundError):
        bob.models.retrieve(served.name)
    with pytest.raises(openai.NotFoundError):
        served.openai().models.retrieve(str(bobs["name"]))
    bob_http.delete(f"{PATH}/{bobs['name']}")


@pytest.mark.parametrize("name", ["no-such-endpoint", "meta-llama/Llama-3-8B"])
def test_retrieving_an_unknown_model_is_a_404_naming_it(served: Served, name: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        served.openai().models.retrieve(name)
    assert name in str(raised.value)


def test_an_endpoint_being_deleted_is_no_longer_listed_or_retrievable(served: Served) -> None:
    doomed = endpoint_body(name=unique_name("doomed"))
    assert served.http.post(PATH, json=doomed).status_code == 200
    assert doomed["name"] in [m.id for m in served.openai().models.list()]
    assert served.http.delete(f"{PATH}/{doomed['name']}").status_code == 200
    assert doomed["name"] not in [m.id for m in served.openai().models.list()]
    with pytest.raises(openai.NotFoundError):
        served.openai().models.retrieve(str(doomed["name"]))
