"""Issue 8, deletes: concurrent DELETEs of one endpoint end with exactly one 200 and 404s
(the endpoint has left the view of the others; never a 409 or a 500), and nothing of the
endpoint is left behind."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.builders import endpoint_body

ROUNDS = 30
AT_ONCE = 3


def delete_at_once(client: httpx.Client, name: str) -> list[httpx.Response]:
    path = f"/v1/llm/model-endpoints/{name}"
    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(lambda _: client.delete(path), range(AT_ONCE)))


def test_concurrent_deletes_of_one_endpoint_give_one_200_and_404s_for_the_others(
    alice: httpx.Client,
) -> None:
    for _ in range(ROUNDS):
        body = endpoint_body()
        assert alice.post("/v1/llm/model-endpoints", json=body).status_code == 200
        answers = delete_at_once(alice, body["name"])
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) == 1, [(r.status_code, r.text) for r in answers]
        assert set(codes) == {200, 404}, [(r.status_code, r.text) for r in answers]
        for refused in (r for r in answers if r.status_code != 200):
            assert refused.json()["detail"] == f"no endpoint named {body['name']!r}"
        assert alice.get(f"/v1/llm/model-endpoints/{body['name']}").status_code == 404
        listed = alice.get("/v1/llm/model-endpoints", params={"include_deleting": "true"})
        assert body["name"] not in [e["name"] for e in listed.json()["model_endpoints"]]
