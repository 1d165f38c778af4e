"""Issue 8, item 5: Kubernetes object names are scoped by owner.

Two owners may each have an endpoint `foo` on the Kubernetes backend; each gets its own
objects, and nothing one owner sees (status, reason, error) names the other's endpoint
objects or id. Names stay valid DNS labels within Kubernetes' limits, `llm-launch render`
gives an owner the names the backend would, a name taken by an object that is not the
endpoint's own is refused without saying whose it is, and objects named the old way
(`llm-<name>`, before the upgrade) are replaced by the owner-scoped ones.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.render import render_endpoint
from llm_launch.domain.errors import LaunchError
from llm_launch.domain.names import max_name_length
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import CATALOG, an_endpoint, eventually
from tests.support.server import RunningServer
from tests.unit.kubernetes import a_config
from tests.unit.kubernetes import an_endpoint as stored

ALICE_KEY = "alice-kube-key-0123456789abcdef"
BOB_KEY = "bob-kube-key-0123456789abcdef00"
ENDPOINT_ID_LABEL = "llm-launch.io/endpoint-id"
DNS_LABEL_LIMIT = 63


def names_by_kind(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["kind"]: o["metadata"]["name"] for o in objects}


def labelled_with(kube_api: FakeKubeApi, plural: str, endpoint_id: str) -> list[str]:
    found = []
    for name in kube_api.names(plural):
        obj = kube_api.get(plural, name) or {}
        if (obj.get("metadata", {}).get("labels") or {}).get(ENDPOINT_ID_LABEL) == endpoint_id:
            found.append(name)
    return found


# -- two owners, one name, through a real server ---------------------------------------


@pytest.fixture
def owners(kube_api: FakeKubeApi, tmp_path: Path) -> Iterator[dict[str, httpx.Client]]:
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{ALICE_KEY},bob:{BOB_KEY}",
        "LLM_LAUNCH_BACKEND": "kubernetes",
        "LLM_LAUNCH_KUBERNETES_NAMESPACE": "default",
        "KUBECONFIG": str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")),
    }
    server = RunningServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env).start()
    try:
        with (
            httpx.Client(base_url=server.url, headers={"x-api-key": ALICE_KEY}) as alice,
            httpx.Client(base_url=server.url, headers={"x-api-key": BOB_KEY}) as bob,
        ):
            yield {"alice": alice, "bob": bob}
    finally:
        server.stop()


def wait_until_observed(client: httpx.Client, name: str) -> dict[str, Any]:
    """The endpoint once the backend has applied it and said something about it."""
    deadline = time.monotonic() + 60
    while True:
        endpoint: dict[str, Any] = client.get(f"/v1/llm/model-endpoints/{name}").json()
        if endpoint["status"] != "UPDATE_PENDING" and endpoint["spec"].get("status_reason"):
            return endpoint
        assert time.monotonic() < deadline, f"never observed: {endpoint}"
        time.sleep(0.2)


def test_two_owners_each_get_their_own_kubernetes_objects_for_the_same_endpoint_name(
    kube_api: FakeKubeApi, owners: dict[str, httpx.Client]
) -> None:
    for client in owners.values():
        assert client.post("/v1/llm/model-endpoints", json=seed_body(name="foo")).status_code == 200
    seen = {who: wait_until_observed(client, "foo") for who, client in owners.items()}
    ids = {who: str(endpoint["id"]) for who, endpoint in seen.items()}
    for who, endpoint_id in ids.items():
        assert len(labelled_with(kube_api, "leaderworkersets", endpoint_id)) == 1, who
        assert len(labelled_with(kube_api, "services", endpoint_id)) == 1, who
    objects = {who: labelled_with(kube_api, "leaderworkersets", ids[who]) for who in ids}
    assert objects["alice"] != objects["bob"]
    for who, other in (("alice", "bob"), ("bob", "alice")):
        again = owners[who].get("/v1/llm/model-endpoints/foo").json()
        shown = json.dumps(again)
        assert again["status"] != "UPDATE_FAILED", shown
        assert ids[other] not in shown
        assert objects[other][0] not in shown
        listed = json.dumps(owners[who].get("/v1/llm/model-endpoints").json())
        assert ids[other] not in listed and objects[other][0] not in listed


# -- names: deterministic per owner, within limits, the same from `render` -------------


def test_the_same_endpoint_name_gives_each_owner_different_object_names() -> None:
    body = seed_body(name="foo")
    alice = names_by_kind(render_endpoint(stored(body, owner="alice"), a_config()))
    again = names_by_kind(render_endpoint(stored(body, owner="alice"), a_config()))
    bob = names_by_kind(render_endpoint(stored(body, owner="bob"), a_config()))
    assert alice == again
    for kind, name in alice.items():
        assert name != bob[kind], kind
        assert name.startswith("llm-foo"), name


@pytest.mark.parametrize(
    ("nodes", "max_workers"), [(1, 1), (1, 12), (2, 1), (2, 9), (2, 10), (2, 99), (2, 100)]
)
def test_at_the_longest_allowed_name_each_owners_objects_and_pods_stay_valid_dns_labels(
    nodes: int, max_workers: int
) -> None:
    limit = max_name_length(nodes_per_worker=nodes, max_workers=max_workers)
    shape: dict[str, Any] = {"min_workers": 1, "max_workers": max_workers}
    body = seed_body(**shape) if nodes > 1 else endpoint_body(**shape)
    body["name"] = "a" * limit
    seen: dict[str, dict[str, str]] = {}
    for owner in ("alice", "bob"):
        objects = render_endpoint(stored(body, owner=owner), a_config())
        seen[owner] = names = names_by_kind(objects)
        for kind, name in names.items():
            limit = 253 if kind == "Secret" else DNS_LABEL_LIMIT  # a DNS subdomain
            assert len(name) <= limit and name[-1].isalnum(), name
        if nodes > 1:
            lws = names["LeaderWorkerSet"]
            assert len(lws) <= 51 - max_workers // 10, lws
            assert len(f"{lws}-{max_workers - 1}-{nodes - 1}") <= DNS_LABEL_LIMIT
    assert set(seen["alice"].values()).isdisjoint(seen["bob"].values())
    too_long = {**body, "name": "a" * (limit + 1)}
    with pytest.raises(LaunchError, match=f"must be at most {limit} characters"):
        build_spec(too_long, CATALOG)


def test_an_endpoint_stored_with_a_name_longer_than_todays_limit_still_gets_valid_names() -> None:
    """An upgrade: names accepted before the owner suffix existed still render validly,
    and two such names of one owner still get different objects."""
    base = stored(seed_body(min_workers=1, max_workers=1))
    names = []
    for last in "xy":
        legacy = dataclasses.replace(base.spec, name="a" * 46 + last)  # the old limit, 47
        objects = render_endpoint(dataclasses.replace(base, spec=legacy), a_config())
        lws = names_by_kind(objects)["LeaderWorkerSet"]
        assert len(lws) <= 51 and lws[-1].isalnum(), lws
        names.append(lws)
    assert names[0] != names[1]


def test_render_for_an_owner_gives_the_names_the_backend_gives_that_owners_endpoint(
    tmp_path: Path,
) -> None:
    body = seed_body(name="foo")
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    for owner in ("alice", "bob"):
        printed = subprocess.run(
            [sys.executable, "-m", "llm_launch", "render", "-f", str(path), "--namespace",
             "inference", "--owner", owner],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rendered = names_by_kind([d for d in yaml.safe_load_all(printed) if d])
        backend = names_by_kind(render_endpoint(stored(body, owner=owner), a_config()))
        assert rendered == {k: v for k, v in backend.items() if k in rendered}
        assert rendered["LeaderWorkerSet"] == backend["LeaderWorkerSet"]


# -- a taken name, and objects named the old way ---------------------------------------


async def test_a_name_taken_by_another_endpoints_object_is_refused_without_saying_whose(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    mine = an_endpoint(seed_body(name="foo"), endpoint_id="end_mine")
    theirs = an_endpoint(seed_body(name="foo"), endpoint_id="end_theirs0123456789")
    (workload,) = [  # same owner and name, hence the same suffix: a collision
        o for o in render_endpoint(theirs, backend.config) if o["kind"] == "LeaderWorkerSet"
    ]
    kube_api.put("leaderworkersets", workload)
    await backend.apply(mine)  # refused: recorded, and the status says so
    refused = await backend.observe(mine)
    assert refused.status is EndpointStatus.UPDATE_FAILED
    message = refused.reason or ""
    assert "end_theirs0123456789" not in message
    assert workload["metadata"]["name"] in message  # the name is the caller's own
    assert "use another endpoint name" in message


async def test_objects_named_before_owner_scoping_are_replaced_by_owner_scoped_ones(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = an_endpoint(seed_body(name="foo"), endpoint_id="end_upgraded")
    for obj in render_endpoint(endpoint, backend.config):
        if obj["kind"] in ("Secret", "NetworkPolicy"):
            continue  # new since owner scoping: the old version had none
        old = json.loads(json.dumps(obj))
        old["metadata"]["name"] = "llm-foo" + ("-leader" if obj["kind"] == "Service" else "")
        plural = {"LeaderWorkerSet": "leaderworkersets", "Service": "services"}[obj["kind"]]
        kube_api.put(plural, old)
    await backend.apply(endpoint)
    current = names_by_kind(render_endpoint(endpoint, backend.config))

    async def left() -> tuple[list[str], list[str]]:
        return kube_api.names("leaderworkersets"), kube_api.names("services")

    wanted = ([current["LeaderWorkerSet"]], [current["Service"]])
    await eventually(left, lambda names: names == wanted)
    assert current["LeaderWorkerSet"] != "llm-foo"
