"""Secure pods: the forwarder meets Pod Security "restricted", the engine "baseline" with
nothing beyond what it needs, and the namespace manifest enforces that level.

The Pod Security checks here restate the documented controls
(https://kubernetes.io/docs/concepts/security/pod-security-standards/) for the fields
llm-launch renders; a pod failing one would be refused by a namespace enforcing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_launch.backends.kubernetes.config import KubernetesConfigError
from tests.unit.kubernetes import CASES, a_config, rendered

ROOT = Path(__file__).resolve().parents[3]
# Pod Security Standards, Baseline, "Capabilities": the only ones a container may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
BASELINE_VOLUMES_FORBIDDEN = {"hostPath"}


def pod_specs() -> list[Any]:
    """Every pod spec of every case, and whether its GPU type has RDMA capabilities."""
    specs = []
    for case, (body, config) in CASES.items():
        rdma = "catalog" in config  # the case whose catalog gives the H100 RDMA devices
        for obj in rendered(body, **config):
            spec = obj.get("spec", {})
            found = [spec.get("template"), *spec.get("leaderWorkerTemplate", {}).values()]
            for i, template in enumerate(t for t in found if isinstance(t, dict)):
                param = (template["spec"], rdma)
                specs.append(pytest.param(*param, id=f"{case}-{obj['kind']}-{i}"))
    return specs


def container(spec: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in spec["containers"] if c["name"] == name), None)


def baseline_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(field)
    for c in spec["containers"]:
        context = c.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        added = set(context.get("capabilities", {}).get("add", []))
        if added - BASELINE_CAPABILITIES:
            problems.append(f"{c['name']}: adds {sorted(added - BASELINE_CAPABILITIES)}")
        if c.get("ports") and any("hostPort" in p for p in c["ports"]):
            problems.append(f"{c['name']}: hostPort")
    for volume in spec.get("volumes", []):
        if BASELINE_VOLUMES_FORBIDDEN & set(volume):
            problems.append(f"volume {volume['name']}: hostPath")
    return problems


def restricted_container_problems(spec: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """Restricted's container controls (on top of baseline), pod-level values counting."""
    pod, context = spec.get("securityContext", {}), c.get("securityContext", {})
    problems = []
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    if not context.get("runAsNonRoot", pod.get("runAsNonRoot")):
        problems.append("runAsNonRoot must be true")
    if context.get("runAsUser", pod.get("runAsUser")) == 0:
        problems.append("runAsUser 0")
    seccomp = context.get("seccompProfile", pod.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccomp must be RuntimeDefault or Localhost")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append("capabilities must drop ALL")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append("only NET_BIND_SERVICE may be added")
    return problems


@pytest.mark.parametrize(("spec", "rdma"), pod_specs())
class TestEveryPod:
    def test_meets_baseline_but_for_the_capability_rdma_adds(
        self, spec: dict[str, Any], rdma: bool
    ) -> None:
        # IPC_LOCK is outside baseline: an RDMA GPU type needs a `privileged` namespace.
        assert baseline_problems(spec) == (["engine: adds ['IPC_LOCK']"] if rdma else [])

    def test_runs_with_the_runtimes_default_seccomp_profile(
        self, spec: dict[str, Any], rdma: bool
    ) -> None:
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}

    def test_has_a_forwarder_meeting_restricted_when_it_has_one(
        self, spec: dict[str, Any], rdma: bool
    ) -> None:
        forwarder = container(spec, "forwarder")
        if forwarder is not None:
            assert restricted_container_problems(spec, forwarder) == []

    def test_has_an_engine_that_cannot_escalate_and_holds_no_default_capability(
        self, spec: dict[str, Any], rdma: bool
    ) -> None:
        engine = container(spec, "engine")
        assert engine is not None
        context = engine["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in context


class TestTheForwarder:
    def forwarder(self, **config: Any) -> dict[str, Any]:
        body, _ = CASES["seed"]
        lws = rendered(body, **config)[1]
        leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
        found = container(leader, "forwarder")
        assert found is not None
        return found

    def test_runs_as_the_configured_non_root_user_on_a_read_only_root(self) -> None:
        context = self.forwarder(forwarder_user_id=10001)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
        assert context["readOnlyRootFilesystem"] is True

    def test_starts_in_a_directory_every_user_can_read(self) -> None:
        # The engine images' WORKDIR belongs to root; a non-root user may not enter it.
        assert self.forwarder()["workingDir"] == "/"

    def test_root_is_refused_as_its_user(self) -> None:
        with pytest.raises(KubernetesConfigError, match="forwarder_user_id"):
            a_config(forwarder_user_id=0)


class TestTheEngineStaysBaseline:
    def test_a_hostpath_weights_cache_is_what_breaks_baseline(self) -> None:
        from llm_launch.backends.kubernetes.config import WeightsVolume

        body, _ = CASES["seed"]
        lws = rendered(body, weights_volume=WeightsVolume.parse("hostPath:/var/cache/llm"))[1]
        spec = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
        assert baseline_problems(spec) == ["volume weights: hostPath"]


class TestTheNamespaceManifest:
    def labels(self) -> dict[str, str]:
        namespace = yaml.safe_load((ROOT / "deploy/kubernetes/namespace.yaml").read_text())
        return dict(namespace["metadata"]["labels"])

    def test_enforces_baseline_and_warns_and_audits_at_restricted(self) -> None:
        labels = self.labels()
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
