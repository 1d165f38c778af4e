"""`routing_policy`, llm-launch's own field: chosen at create or update, returned by GET,
refused with a 422 naming it when unknown (changing nothing), and outside the bundle."""

from __future__ import annotations

from typing import Any

import httpx

from tests.builders import endpoint_body

ENDPOINTS = "/v1/llm/model-endpoints"


def spec_of(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"{ENDPOINTS}/{name}")
    assert response.status_code == 200, response.text
    spec: dict[str, Any] = response.json()["spec"]
    return spec


def test_an_endpoint_created_without_a_policy_routes_least_in_flight(
    alice: httpx.Client,
) -> None:
    body = endpoint_body(name="rp-default")
    assert alice.post(ENDPOINTS, json=body).status_code == 200
    assert spec_of(alice, "rp-default")["routing_policy"] == "least_in_flight"


def test_a_cache_aware_endpoint_says_so_and_a_null_policy_in_an_update_keeps_it(
    alice: httpx.Client,
) -> None:
    body = endpoint_body(name="rp-cache", routing_policy="cache_aware")
    assert alice.post(ENDPOINTS, json=body).status_code == 200
    assert spec_of(alice, "rp-cache")["routing_policy"] == "cache_aware"
    update = alice.put(f"{ENDPOINTS}/rp-cache", json={"routing_policy": None, "max_workers": 2})
    assert update.status_code == 200, update.text
    assert spec_of(alice, "rp-cache")["routing_policy"] == "cache_aware"


def test_changing_the_policy_keeps_the_bundle_name(alice: httpx.Client) -> None:
    assert alice.post(ENDPOINTS, json=endpoint_body(name="rp-switch")).status_code == 200
    before = spec_of(alice, "rp-switch")
    update = alice.put(f"{ENDPOINTS}/rp-switch", json={"routing_policy": "cache_aware"})
    assert update.status_code == 200, update.text
    after = spec_of(alice, "rp-switch")
    assert after["routing_policy"] == "cache_aware"
    assert after["bundle_name"] == before["bundle_name"]


def test_an_unknown_policy_is_a_422_naming_the_field_and_nothing_is_stored(
    alice: httpx.Client,
) -> None:
    body = endpoint_body(name="rp-bad", routing_policy="round_robin")
    response = alice.post(ENDPOINTS, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["routing_policy"]
    assert "least_in_flight" in errors[0]["message"]
    assert alice.get(f"{ENDPOINTS}/rp-bad").status_code == 404


def test_an_update_to_an_unknown_policy_is_refused_and_changes_nothing(
    alice: httpx.Client,
) -> None:
    assert alice.post(ENDPOINTS, json=endpoint_body(name="rp-keep")).status_code == 200
    response = alice.put(f"{ENDPOINTS}/rp-keep", json={"routing_policy": 3})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["routing_policy"]
    assert spec_of(alice, "rp-keep")["routing_policy"] == "least_in_flight"
