"""Issue 8, deletes: concurrent DELETEs of one endpoint end with exactly one 200 and clear
404/409 answers (never a 500), and nothing of the endpoint is left behind."""

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


def test_concurrent_deletes_of_one_endpoint_give_one_200_and_clear_refusals(
    alice: httpx.Client,
) -> None:
    for _ in range(ROUNDS):
        body = endpoint_body()
        assert alice.post("/v1/llm/model-endpoints", json=body).status_code == 200
        answers = delete_at_once(alice, body["name"])
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) == 1, [(r.status_code, r.text) for r in answers]
        assert set(codes) <= {200, 404, 409}, [(r.status_code, r.text) for r in answers]
        for refused in (r for r in answers if r.status_code != 200):
            detail = refused.json()["detail"]
            assert "already being deleted" in detail or "no endpoint named" in detail
        assert alice.get(f"/v1/llm/model-endpoints/{body['name']}").status_code == 404
