"""Issue 8, item 4 on Kubernetes: each endpoint's forwarder token lives in its own Secret.

The backend applies a per-endpoint Secret (owner-scoped name, our labels, type Opaque, key
`token`) before the workload; only the leader's forwarder container gets
LLM_LAUNCH_FORWARDER_TOKEN, through a secretKeyRef, so the token is in no pod spec.
`llm-launch render` (no stored endpoint) references the Secret and holds no token. The
Secret is pruned, torn down and garbage-collected with the endpoint's other objects, and
the token never shows in an error the backend raises.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.render import render_endpoint, render_spec
from llm_launch.backends.kubernetes.render_names import EndpointIdentity
from llm_launch.domain.endpoint import Endpoint
from llm_launch.domain.spec_builder import build_spec
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import CATALOG, eventually
from tests.integration.kubernetes.conftest import an_endpoint as applied_endpoint
from tests.support.local_groups import wait_for
from tests.support.server import RunningServer
from tests.unit.kubernetes import a_config, an_endpoint

TOKEN = "tok-0123456789abcdefghijklmnopqrstuvwxyzABCDE"
TOKEN_ENV = "LLM_LAUNCH_FORWARDER_TOKEN"
Manifest = dict[str, Any]


def with_token(endpoint: Endpoint, token: str = TOKEN) -> Endpoint:
    return dataclasses.replace(endpoint, forwarder_token=token)


def of_kind(objects: list[Manifest], kind: str) -> Manifest:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def containers_of(template: Manifest) -> dict[str, Manifest]:
    return {c["name"]: c for c in template["spec"]["containers"]}


def token_env(container: Manifest) -> list[Manifest]:
    return [e for e in container.get("env", []) if e["name"] == TOKEN_ENV]


# -- rendering --------------------------------------------------------------------------


def test_a_stored_endpoint_renders_its_token_secret_first_with_our_labels() -> None:
    objects = render_endpoint(with_token(an_endpoint(seed_body())), a_config())
    secret = objects[0]
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    assert "stringData" not in secret
    workload = objects[1]
    assert secret["metadata"]["labels"] == workload["metadata"]["labels"]
    assert secret["metadata"]["annotations"] == workload["metadata"]["annotations"]
    assert secret["metadata"]["namespace"] == workload["metadata"]["namespace"]
    assert secret["metadata"]["name"].startswith(workload["metadata"]["name"])
    for version in ("1.33", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(secret, version, strict=True)


def test_two_owners_endpoints_of_one_name_get_different_secrets() -> None:
    names = set()
    for owner in ("alice", "bob"):
        objects = render_endpoint(with_token(an_endpoint(seed_body(), owner=owner)), a_config())
        names.add(of_kind(objects, "Secret")["metadata"]["name"])
    assert len(names) == 2


@pytest.mark.parametrize("body", [seed_body(), endpoint_body(name="chat")], ids=["lws", "deploy"])
def test_only_the_leaders_forwarder_reads_the_token_and_only_from_the_secret(
    body: dict[str, Any],
) -> None:
    objects = render_endpoint(with_token(an_endpoint(body)), a_config())
    secret = of_kind(objects, "Secret")["metadata"]["name"]
    workload = objects[1]
    if workload["kind"] == "LeaderWorkerSet":
        templates = workload["spec"]["leaderWorkerTemplate"]
        leader, others = templates["leaderTemplate"], [templates["workerTemplate"]]
    else:
        leader, others = workload["spec"]["template"], []
    pods = containers_of(leader)
    assert token_env(pods["forwarder"]) == [
        {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}
    ]
    assert token_env(pods["engine"]) == []
    for template in others:
        assert all(token_env(c) == [] for c in containers_of(template).values())
    for obj in objects[1:]:
        assert TOKEN not in json.dumps(obj), obj["kind"]


def test_render_without_a_stored_endpoint_references_the_secret_and_holds_no_token(
    tmp_path: Path,
) -> None:
    spec = build_spec(seed_body(), CATALOG)
    identity = EndpointIdentity(name=spec.name, endpoint_id="ep-x", owner="alice")
    objects = render_spec(spec, a_config(), identity)
    assert "Secret" not in [o["kind"] for o in objects]
    stored = render_endpoint(with_token(an_endpoint(seed_body())), a_config())
    leader = objects[0]["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    (ref,) = token_env(containers_of(leader)["forwarder"])
    assert ref["valueFrom"]["secretKeyRef"]["name"] == stored[0]["metadata"]["name"]

    path = tmp_path / "body.json"
    path.write_text(json.dumps(seed_body()))
    printed = subprocess.run(
        [sys.executable, "-m", "llm_launch", "render", "-f", str(path), "--owner", "alice"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(printed) if d]
    assert "Secret" not in kinds
    secret_name = stored[0]["metadata"]["name"]
    assert f"Secret {secret_name}" in printed  # the output says which Secret must exist
    assert "key `token`" in printed


# -- the backend, against the local API server ---------------------------------------


async def test_the_secret_is_applied_before_the_workload_and_removed_with_the_endpoint(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = with_token(applied_endpoint(seed_body(), endpoint_id="end_tokened"))
    await backend.apply(endpoint)
    writes = [r.plural for r in kube_api.writes()]
    assert writes.index("secrets") < writes.index("leaderworkersets")
    (name,) = kube_api.names("secrets")
    secret = kube_api.get("secrets", name)
    assert secret is not None
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    assert secret["metadata"]["labels"]["llm-launch.io/endpoint-id"] == "end_tokened"
    await backend.teardown(endpoint)
    assert kube_api.names("secrets") == []


async def test_garbage_collection_deletes_the_secret_of_an_endpoint_that_is_gone(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    await backend.apply(with_token(applied_endpoint(seed_body(), endpoint_id="end_gone")))
    assert len(kube_api.names("secrets")) == 1
    await backend.collect_garbage(set())

    async def left() -> list[str]:
        return kube_api.names("secrets")

    await eventually(left, lambda names: names == [])


async def test_an_error_applying_the_secret_never_carries_the_token(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    encoded = base64.b64encode(TOKEN.encode()).decode()
    for code, reason in ((422, "Invalid"), (500, "InternalError"), (403, "Forbidden")):
        message = f"Secret is refused: data[token]: Invalid value: {encoded!r} ({TOKEN})"
        cause = {"field": "data[token]", "message": f"bad value {encoded} {TOKEN}"}
        kube_api.fail_next("PATCH", "secrets", code, reason, message, [cause])
        endpoint = with_token(applied_endpoint(seed_body(), endpoint_id=f"end_refused{code}"))
        await backend.apply(endpoint)  # a failed apply is recorded; the status shows it
        shown = (await backend.observe(endpoint)).reason or ""
        assert TOKEN not in shown and encoded not in shown, code
        assert "Secret" in shown
        assert kube_api.names("leaderworkersets") == []  # nothing runs without its Secret


# -- through a real server ------------------------------------------------------------


def test_a_served_endpoint_gets_its_stored_token_in_a_secret_and_never_shows_it(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    key = "alice-kube-key-0123456789abcdef"
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{key}",
        "LLM_LAUNCH_BACKEND": "kubernetes",
        "LLM_LAUNCH_KUBERNETES_NAMESPACE": "default",
        "KUBECONFIG": str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")),
    }
    server = RunningServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}) as alice:
            assert alice.post("/v1/llm/model-endpoints", json=seed_body()).status_code == 200
            wait_for(alice, "deepseek-r1", lambda e: bool(kube_api.names("leaderworkersets")))
            (name,) = kube_api.names("secrets")
            secret = kube_api.get("secrets", name)
            assert secret is not None
            token = base64.b64decode(secret["data"]["token"]).decode()
            assert len(token) >= 32
            shown = alice.get("/v1/llm/model-endpoints").text
            shown += alice.get("/v1/llm/model-endpoints/deepseek-r1").text
            (lws,) = kube_api.names("leaderworkersets")
            assert token not in shown and token not in json.dumps(
                kube_api.get("leaderworkersets", lws)
            )
    finally:
        server.stop()
    assert token not in server.log()
