"""Waiting for a delete to finish: DELETE answers at once and the teardown goes on in the
background (services/deletes.py), so a test that checks what is left afterwards first
waits until the endpoint has left even `?include_deleting=true`."""

from __future__ import annotations

import time

import httpx

WAIT_S = 60.0  # generous: the poll ends as soon as the endpoint is gone


def wait_until_deleted(client: httpx.Client, name: str, timeout: float = WAIT_S) -> None:
    """Poll until no endpoint `name` is listed, not even one being deleted."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/v1/llm/model-endpoints", params={"include_deleting": "true"})
        listed.raise_for_status()
        remaining = [e for e in listed.json()["model_endpoints"] if e["name"] == name]
        if not remaining:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"endpoint {name!r} still being deleted after {timeout}s: "
                f"{remaining[0]['spec'].get('status_reason')}"
            )
        time.sleep(0.1)
