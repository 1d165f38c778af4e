"""The RBAC of deploy/kubernetes is exactly what the control plane calls: nothing missing
(a 403 at run time), nothing extra (least privilege).

What the code calls is derived, not listed: the Kubernetes backend is driven through its
whole life against the test API server (start with its CRD check, apply of a multi-node
autoscaled endpoint and a single-node one, the watches, a log, a new generation that drops
the HPA, teardown, garbage collection), and the leader election through taking, renewing
and giving up its Lease. The server records the (API group, resource, verb) every request
is authorized as (tests/fakes/kube/access.py: a server-side apply that creates is also
authorized as `create`, by the patch handler). The Role's rules must be exactly that set;
the ClusterRole's exactly the cluster-scoped reads, by resourceName.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.client import KubeClient
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.render_names import object_name
from tests.builders import endpoint_body, seed_body
from tests.fakes.kube.access import Access
from tests.fakes.kube_api import FakeKubeApi, lws_pod
from tests.integration.kubernetes.conftest import CATALOG, FAST, an_endpoint, eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def granted(path: Path, kind: str) -> set[tuple[str, ...]]:
    """(apiGroup, resource, verb), plus the name when a rule lists resourceNames."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    assert len(documents) == 1, f"{path.name} holds one {kind}"
    found: set[tuple[str, ...]] = set()
    for rule in documents[0]["rules"]:
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    found |= {(group, resource, verb, *([n] if n else [])) for n in names}
    return found


def namespaced(accesses: list[Access]) -> set[tuple[str, ...]]:
    return {(a.group, a.resource, a.verb) for a in accesses if a.resource != CRDS}


def cluster_scoped(accesses: list[Access]) -> set[tuple[str, ...]]:
    return {(a.group, a.resource, a.verb, a.name) for a in accesses if a.resource == CRDS}


CRDS = "customresourcedefinitions"


async def drive_the_backend(kube_api: FakeKubeApi, kubeconfig: str) -> None:
    config = KubernetesConfig(namespace="default", catalog=CATALOG)
    backend = KubernetesBackend(config, kubeconfig, timing=FAST)
    try:
        await backend.start()
        multinode = an_endpoint(seed_body(min_workers=1, max_workers=3), endpoint_id="ep-multi")
        single = an_endpoint(endpoint_body(name="chat"), endpoint_id="ep-single")
        for endpoint in (multinode, single):
            await backend.apply(endpoint)
            await backend.observe(endpoint)
        lws = object_name(multinode.owner, multinode.spec)
        kube_api.put("pods", lws_pod(lws, 0, 0, multinode.id))
        kube_api.set_log(f"{lws}-0", "engine", "loading weights\n")
        await eventually(lambda: backend.logs(multinode, 0, "rank-0", 5), lambda t: "load" in t)
        fixed = an_endpoint(seed_body(), endpoint_id="ep-multi", generation=2)
        await backend.apply(fixed)  # drops the HPA: pruned
        kube_api.remove("pods", f"{lws}-0")  # as the LWS controller would, once deleted
        await backend.teardown(fixed)
        await backend.collect_garbage(set())
    finally:
        await backend.close()


async def drive_the_leader_election(kubeconfig: str) -> None:
    """Take the Lease (create), renew it (update), give it up (update)."""
    if importlib.util.find_spec("llm_launch.backends.kubernetes.leader") is None:
        return  # no leader election in this tree: the Role must then grant no Lease
    from llm_launch.backends.kubernetes import leader

    client = await KubeClient.connect(kubeconfig, request_timeout_s=5.0)
    try:
        elector = leader.LeaderElector(client, leader.LeaseSettings(namespace="default"))
        assert await elector.try_acquire_or_renew()
        assert await elector.try_acquire_or_renew()
        await elector._release()
    finally:
        await client.close()


async def test_the_role_grants_exactly_what_the_control_plane_calls_in_its_namespace(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    await drive_the_backend(kube_api, kubeconfig)
    await drive_the_leader_election(kubeconfig)
    called = namespaced(kube_api.accesses)
    role = granted(DEPLOY / "role.yaml", "Role")
    assert sorted(called - role) == [], "the Role lacks what the code calls"
    assert sorted(role - called) == [], "the Role grants what the code never calls"


async def test_the_cluster_role_grants_only_get_on_the_leaderworkerset_crd(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    await drive_the_backend(kube_api, kubeconfig)
    called = cluster_scoped(kube_api.accesses)
    cluster_role = granted(DEPLOY / "clusterrole.yaml", "ClusterRole")
    assert called == {
        ("apiextensions.k8s.io", CRDS, "get", "leaderworkersets.leaderworkerset.x-k8s.io")
    }
    assert cluster_role == called


def test_the_kustomization_binds_both_roles_to_the_control_planes_service_account() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for name in ("role.yaml", "rolebinding.yaml", "clusterrole.yaml", "clusterrolebinding.yaml"):
        assert name in kustomization["resources"]
    binding: Any = yaml.safe_load((DEPLOY / "clusterrolebinding.yaml").read_text())
    account = yaml.safe_load((DEPLOY / "serviceaccount.yaml").read_text())
    cluster_role = yaml.safe_load((DEPLOY / "clusterrole.yaml").read_text())
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
        ("ServiceAccount", account["metadata"]["name"])
    ]
