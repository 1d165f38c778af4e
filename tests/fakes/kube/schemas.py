"""The schemas the test API server reads: what fields a kind has, how its lists merge, and
its defaults.

Sources, as the real API server has them:
- built-in kinds (Deployment, Service, HorizontalPodAutoscaler, Secret, Pod, Event): the
  OpenAPI definitions bundled with `kubernetes-validate` (Kubernetes 1.33), generated from
  the same Go types the API server serves. Their `x-kubernetes-list-type`,
  `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` and `x-kubernetes-patch-merge-key`
  decide how server-side apply merges a list: as k8s.io/kube-openapi `schemaconv` reads them,
  a list with a list-type uses it, one with only a patch merge key is a map keyed by it, any
  other list is atomic (replaced whole).
- LeaderWorkerSet: the CRD's openAPIV3Schema in deploy/crds/. For a CRD, a list without
  `x-kubernetes-list-type` is atomic ("Structural schemas", CustomResourceDefinition docs),
  `metadata` is ObjectMeta whatever the schema says, fields the schema does not declare
  are pruned unless `x-kubernetes-preserve-unknown-fields` is set ("Field pruning"), and
  `default`s are applied where a field is missing and its parent exists ("Defaulting").
- built-in defaults: there is no `default` in a built-in schema; they are Go functions. The
  ones for the fields llm-launch writes are in `_BUILTIN_DEFAULTS` below, each from its
  source file in kubernetes/kubernetes (`pkg/apis/<group>/<version>/defaults.go`).
Not imitated: type, format, enum and CEL validation (kubernetes-validate checks rendered
objects against the same schemas in tests/unit/kubernetes/test_render_schemas.py).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

Object = dict[str, Any]
ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "deploy" / "crds" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
K8S_VERSION = "1.33.0"
_BUILTIN_ROOTS = {  # plural -> definition name in the bundled OpenAPI
    "deployments": "io.k8s.api.apps.v1.Deployment",
    "services": "io.k8s.api.core.v1.Service",
    "horizontalpodautoscalers": "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    "secrets": "io.k8s.api.core.v1.Secret",
    "networkpolicies": "io.k8s.api.networking.v1.NetworkPolicy",
    "pods": "io.k8s.api.core.v1.Pod",
    "events": "io.k8s.api.core.v1.Event",
    "leases": "io.k8s.api.coordination.v1.Lease",
}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class Node:
    """One place in a schema. `builtin` nodes follow the Go types' list rules, CRD nodes the
    structural-schema ones (see the module docstring)."""

    def __init__(self, schema: Object, defs: Object, *, builtin: bool) -> None:
        self._defs = defs
        self.builtin = builtin
        self.schema = self._resolve(schema)

    def _resolve(self, schema: Object) -> Object:
        while "$ref" in schema:
            target = self._defs[schema["$ref"].rsplit("/", 1)[-1]]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        if "allOf" in schema and len(schema["allOf"]) == 1:
            schema = {**self._resolve(schema["allOf"][0]), **schema}
        return schema

    def _child(self, schema: Object) -> Node:
        return Node(schema, self._defs, builtin=self.builtin)

    @property
    def accepts_anything(self) -> bool:
        """A place whose contents are not described (unknown fields kept, merged granularly)."""
        s = self.schema
        return bool(s.get("x-kubernetes-preserve-unknown-fields")) or (
            _types(s) <= {"object", "null"}
            and "object" in _types(s)
            and "properties" not in s
            and "additionalProperties" not in s
        )

    @property
    def atomic(self) -> bool:
        """A map or struct replaced whole (`x-kubernetes-map-type: atomic`)."""
        return self.schema.get("x-kubernetes-map-type") == "atomic"

    def field(self, name: str) -> Node | None:
        """The schema of field `name`, or None when the schema does not declare it."""
        properties = self.schema.get("properties") or {}
        if name in properties:
            return self._child(properties[name])
        extra = self.schema.get("additionalProperties")
        if isinstance(extra, dict):
            return self._child(extra)
        if self.accepts_anything or extra is True or not _types(self.schema) & {"object"}:
            return ANY
        return None

    def items(self) -> Node:
        return self._child(self.schema.get("items") or {}) if "items" in self.schema else ANY

    @property
    def list_type(self) -> str:
        """atomic, set or map (keyed by `map_keys`)."""
        s = self.schema
        if "x-kubernetes-list-type" in s:
            return str(s["x-kubernetes-list-type"])
        if self.builtin and s.get("x-kubernetes-patch-merge-key"):
            return "map"
        return "atomic"

    @property
    def map_keys(self) -> list[str]:
        s = self.schema
        return list(s.get("x-kubernetes-list-map-keys") or [s.get("x-kubernetes-patch-merge-key")])

    def key_default(self, key: str) -> Any:
        """A list-map key's default, for an item that leaves it out (protocol: TCP)."""
        found = (self.items().schema.get("properties") or {}).get(key) or {}
        return found.get("default", "TCP" if key == "protocol" else None)


def _types(schema: Object) -> set[str]:
    declared = schema.get("type")
    if declared is None:
        return {"object"} if "properties" in schema or "additionalProperties" in schema else set()
    return {declared} if isinstance(declared, str) else set(declared)


ANY = Node({"x-kubernetes-preserve-unknown-fields": True}, {}, builtin=False)


@functools.cache
def _builtin_defs() -> Object:
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = folder / f"v{K8S_VERSION}-local" / "_definitions.json"
    return dict(json.loads(path.read_text())["$defs"])


@functools.cache
def _crd_version() -> Object:
    crd = yaml.safe_load(CRD.read_text())
    return dict(next(v for v in crd["spec"]["versions"] if v.get("storage")))


def schema_for(plural: str) -> Node:
    """The root schema of a kind; `metadata` is always ObjectMeta, as the server has it."""
    defs = _builtin_defs()
    if plural in _BUILTIN_ROOTS:
        return Node(defs[_BUILTIN_ROOTS[plural]], defs, builtin=True)
    root = copy.deepcopy(_crd_version()["schema"]["openAPIV3Schema"])
    node = Node(root, defs, builtin=False)
    node.schema["properties"]["metadata"] = {"$ref": f"#/$defs/{_OBJECT_META}"}
    return node


def crd_scale_paths() -> tuple[str, str]:
    """The LeaderWorkerSet CRD's scale subresource: spec and status replicas paths."""
    scale = _crd_version()["subresources"]["scale"]
    return str(scale["specReplicasPath"]), str(scale["statusReplicasPath"])


# -- unknown fields: pruning and strict validation ------------------------------------------
def unknown_fields(value: Any, node: Node, path: str = "") -> Iterator[str]:
    """The paths (`.spec.foo`) of fields the schema does not declare."""
    if isinstance(value, dict) and not node.accepts_anything:
        for key, child in value.items():
            found = node.field(key)
            if found is None:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(child, found, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unknown_fields(item, node.items(), f"{path}[{index}]")


def prune(value: Any, node: Node) -> Any:
    """`value` without the fields the schema does not declare (CRD pruning; for built-in
    kinds, what the decoder drops)."""
    if isinstance(value, dict) and not node.accepts_anything:
        kept = {}
        for key, child in value.items():
            found = node.field(key)
            if found is not None:
                kept[key] = prune(child, found)
        return kept
    if isinstance(value, list):
        return [prune(item, node.items()) for item in value]
    return value


# -- defaults -----------------------------------------------------------------------------
def apply_defaults(plural: str, obj: Object) -> Object:
    """`obj` with the defaults the API server fills in, in place (and returned)."""
    if plural in _BUILTIN_DEFAULTS:
        _BUILTIN_DEFAULTS[plural](obj)
    elif plural not in _BUILTIN_ROOTS:
        _crd_defaults(obj, schema_for(plural))
    return obj


def _crd_defaults(value: Any, node: Node) -> None:
    """Structural defaulting: a missing field with a `default` gets it, where its parent
    object exists (CustomResourceDefinition docs, "Defaulting")."""
    if isinstance(value, dict) and not node.accepts_anything:
        for key, prop in (node.schema.get("properties") or {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        for key, child in value.items():
            found = node.field(key)
            if found is not None:
                _crd_defaults(child, found)
    elif isinstance(value, list):
        for item in value:
            _crd_defaults(item, node.items())


def _set(target: Object, key: str, value: Any) -> None:
    target.setdefault(key, value)


def _deployment(obj: Object) -> None:
    """kubernetes/kubernetes pkg/apis/apps/v1/defaults.go, SetDefaults_Deployment."""
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _pod(obj: Object) -> None:
    _pod_spec(obj.setdefault("spec", {}))


def _pod_spec(spec: Object) -> None:
    """pkg/apis/core/v1/defaults.go: SetDefaults_PodSpec, _Container, _ContainerPort,
    _Probe (the fields llm-launch's pods use)."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        _set(container, "imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
        _set(container, "terminationMessagePath", "/dev/termination-log")
        _set(container, "terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            _set(port, "protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                for key, default in (
                    ("timeoutSeconds", 1),
                    ("periodSeconds", 10),
                    ("successThreshold", 1),
                    ("failureThreshold", 3),
                ):
                    _set(container[probe], key, default)


def _service(obj: Object) -> None:
    """pkg/apis/core/v1/defaults.go, SetDefaults_Service (the cluster IP itself is allocated
    by the registry, see writes.allocate_cluster_ip)."""
    spec = obj.setdefault("spec", {})
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        _set(spec, "internalTrafficPolicy", "Cluster")
    for port in spec.get("ports", []):
        _set(port, "protocol", "TCP")
        _set(port, "targetPort", port.get("port"))


def _hpa(obj: Object) -> None:
    """pkg/apis/autoscaling/v2/defaults.go, SetDefaults_HorizontalPodAutoscaler: minReplicas
    1, a CPU 80% metric when none, and a given `behavior` completed with the default rules."""
    spec = obj.setdefault("spec", {})
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        target = {"type": "Utilization", "averageUtilization": 80}
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    behavior = spec.get("behavior")
    if behavior is not None:
        up = behavior.setdefault("scaleUp", {})
        _set(up, "stabilizationWindowSeconds", 0)
        _set(up, "selectPolicy", "Max")
        _set(
            up,
            "policies",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        down = behavior.setdefault("scaleDown", {})
        _set(down, "selectPolicy", "Max")
        _set(down, "policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _secret(obj: Object) -> None:
    """pkg/apis/core/v1/defaults.go, SetDefaults_Secret: type Opaque."""
    _set(obj, "type", "Opaque")


def _network_policy(obj: Object) -> None:
    """pkg/apis/networking/v1/defaults.go: SetDefaults_NetworkPolicyPort (protocol TCP) and
    SetDefaults_NetworkPolicy (policyTypes: Ingress, plus Egress when egress rules exist)."""
    spec = obj.setdefault("spec", {})
    for rule in (*(spec.get("ingress") or []), *(spec.get("egress") or [])):
        for port in rule.get("ports") or []:
            _set(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]


_BUILTIN_DEFAULTS: dict[str, Callable[[Object], None]] = {
    "deployments": _deployment,
    "services": _service,
    "horizontalpodautoscalers": _hpa,
    "secrets": _secret,
    "networkpolicies": _network_policy,
    "pods": _pod,
}
