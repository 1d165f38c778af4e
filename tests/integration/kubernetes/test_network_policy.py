"""An endpoint's NetworkPolicy on the local API server: applied with its objects (the
strict schema accepting it), kept through re-applies, deleted with the endpoint, and
garbage-collected once the endpoint is gone."""

from __future__ import annotations

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import an_endpoint, eventually
from tests.unit.kubernetes import k8s_name

LWS = k8s_name("deepseek-r1")
CHAT = k8s_name("chat")


async def _policies(kube_api: FakeKubeApi) -> list[str]:
    return kube_api.names("networkpolicies")


async def test_applying_an_endpoint_creates_its_network_policy_and_reapplying_writes_nothing(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = an_endpoint(seed_body(), endpoint_id="ep-multi")
    await backend.apply(endpoint)
    policy = kube_api.get("networkpolicies", LWS)
    assert policy is not None
    assert policy["spec"]["podSelector"]["matchLabels"] == {"llm-launch.io/endpoint-id": "ep-multi"}
    writes = len(kube_api.writes())
    await backend.apply(endpoint)
    assert len(kube_api.writes()) == writes


async def test_teardown_deletes_the_network_policy_with_the_rest(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    endpoint = an_endpoint(seed_body(), endpoint_id="ep-multi")
    await backend.apply(endpoint)
    await backend.teardown(endpoint)
    assert kube_api.names("networkpolicies") == []


async def test_garbage_collection_removes_the_policy_of_an_endpoint_that_is_gone(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    await backend.apply(an_endpoint(seed_body(), endpoint_id="ep-gone"))
    await backend.apply(an_endpoint(endpoint_body(name="chat"), endpoint_id="ep-live"))
    await backend.collect_garbage({"ep-live"})
    await eventually(lambda: _policies(kube_api), lambda names: names == [CHAT])
