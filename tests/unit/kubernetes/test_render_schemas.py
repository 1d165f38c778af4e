"""Every rendered object validates against the official Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors) and every LeaderWorkerSet against the CRD's openAPIV3Schema.

The CRD is read from the repository's copy, deploy/crds/, the source of truth here: one test
checks it against the digest recorded in deploy/crds/SHA256SUMS, and against the project's
shared copy, ../shared/schemas/, when that folder is there. A CRD schema is OpenAPI v3
with Kubernetes extensions, so before jsonschema sees it:
- objects with `properties` refuse unknown fields (as the API server does with strict field
  validation, the kubectl default) unless `x-kubernetes-preserve-unknown-fields` is set;
- `x-kubernetes-int-or-string` admits an integer or a string;
- `x-kubernetes-list-type: set` items must be unique, `map` items unique by their
  `x-kubernetes-list-map-keys` (with the keys' defaults, e.g. protocol TCP);
- formats int32 and int64 are range-checked.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from llm_launch.domain.names import dns1123_label_problem, label_value_problem
from tests.unit.kubernetes import CASES, Manifest, rendered

ROOT = Path(__file__).resolve().parents[3]
CRD_NAME = "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
CRD_COPY = ROOT / "deploy" / "crds" / CRD_NAME
SHARED_CRD = ROOT / ".." / "shared" / "schemas" / CRD_NAME
# The vendored copy is the repository's source of truth; its digest is recorded beside it.
CRD_SUMS = ROOT / "deploy" / "crds" / "SHA256SUMS"
# A widely deployed release and the newest schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.33", kubernetes_validate.latest_version())


# --- the CRD schema, made a JSON Schema -------------------------------------------------


def strict_schema(node: Any) -> Any:
    """Apply the API server's reading of a structural schema (see the module docstring)."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if "properties" in out:
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    if "items" in out:
        out["items"] = strict_schema(out["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [strict_schema(s) for s in out[key]]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _list_type(
    validator: Any, list_type: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        keys: list[str] = []
        identify = functools.partial(json.dumps, sort_keys=True)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        defaults = schema.get("items", {}).get("properties", {})

        def identify(item: Any) -> str:
            return json.dumps([item.get(k, defaults.get(k, {}).get("default")) for k in keys])
    else:
        return
    seen: set[str] = set()
    for item in instance:
        key = identify(item)
        if key in seen:
            yield jsonschema.ValidationError(
                f"duplicate item {key} in a list of type {list_type} (keys {keys})"
            )
        seen.add(key)


FORMATS = jsonschema.FormatChecker()
FORMATS.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
FORMATS.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type}
)


@functools.cache
def lws_validator() -> Any:
    crd = yaml.load(CRD_COPY.read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return CrdValidator(strict_schema(version["schema"]["openAPIV3Schema"]), format_checker=FORMATS)


def crd_errors(obj: Manifest) -> list[str]:
    errors = lws_validator().iter_errors(obj)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


# --- the official Kubernetes schemas ----------------------------------------------------


def kubernetes_errors(obj: Manifest, version: str) -> list[str]:
    """Errors of `obj` under kubernetes-validate's strict schemas. A LeaderWorkerSet is not
    in them: its metadata and pod templates are checked as a core/v1 PodTemplate."""
    if obj["kind"] == "LeaderWorkerSet":
        templates = obj["spec"]["leaderWorkerTemplate"]
        docs = [
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": obj["metadata"], "template": t}
            for key, t in templates.items()
            if key in ("leaderTemplate", "workerTemplate")
        ]
    else:
        docs = [obj]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}")
    return errors


def label_problems(labels: dict[str, str]) -> list[str]:
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and any(dns1123_label_problem(part) for part in prefix.split(".")):
            problems.append(f"{key}: bad prefix")
        if not name or label_value_problem(name):
            problems.append(f"{key}: bad name")
        if label_value_problem(value):
            problems.append(f"{key}={value}: {label_value_problem(value)}")
    return problems


def all_labels(obj: Manifest) -> Iterator[dict[str, str]]:
    yield obj["metadata"]["labels"]
    spec = obj.get("spec", {})  # a Secret has none
    for template in (spec.get("template"), *spec.get("leaderWorkerTemplate", {}).values()):
        if isinstance(template, dict):
            yield template["metadata"]["labels"]
    if "selector" in spec:
        yield spec["selector"].get("matchLabels", spec["selector"])


def of_kind(objects: list[Manifest], kind: str) -> Manifest:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def case_objects(kind: str | None = None) -> list[Any]:
    return [
        pytest.param(obj, id=f"{case}-{obj['kind']}")
        for case, (body, config) in CASES.items()
        for obj in rendered(body, **config)
        if kind in (None, obj["kind"])
    ]


# --- tests ------------------------------------------------------------------------------


class TestRenderedObjectsAreValid:
    @pytest.mark.parametrize("version", K8S_VERSIONS)
    @pytest.mark.parametrize("obj", case_objects())
    def test_under_the_official_kubernetes_schemas(self, obj: Manifest, version: str) -> None:
        assert kubernetes_errors(obj, version) == []

    @pytest.mark.parametrize("obj", case_objects("LeaderWorkerSet"))
    def test_leaderworkersets_under_the_crd_schema(self, obj: Manifest) -> None:
        assert crd_errors(obj) == []

    @pytest.mark.parametrize("obj", case_objects())
    def test_names_and_labels_are_valid(self, obj: Manifest) -> None:
        assert dns1123_label_problem(obj["metadata"]["name"]) is None
        assert obj["metadata"]["name"][0].isalpha()  # Services need DNS-1035 labels
        for labels in all_labels(obj):
            assert label_problems(labels) == []


class TestTheValidatorsCatchMistakes:
    """The checks above can fail: each mistake here is one they must report."""

    def seed_lws(self) -> Manifest:
        body, config = CASES["seed"]
        return copy.deepcopy(of_kind(rendered(body, **config), "LeaderWorkerSet"))

    def test_an_unknown_field_in_a_leaderworkerset(self) -> None:
        lws = self.seed_lws()
        lws["spec"]["leaderWorkerTemplate"]["groupSize"] = 2
        assert any("groupSize" in e for e in crd_errors(lws))

    def test_a_misplaced_restart_policy(self) -> None:
        lws = self.seed_lws()
        lws["spec"]["restartPolicy"] = lws["spec"]["leaderWorkerTemplate"].pop("restartPolicy")
        assert any("restartPolicy" in e for e in crd_errors(lws))

    def test_a_size_that_is_not_an_int32(self) -> None:
        lws = self.seed_lws()
        lws["spec"]["leaderWorkerTemplate"]["size"] = 2**31
        assert any("int32" in e for e in crd_errors(lws))

    def test_a_rollout_value_that_is_neither_int_nor_string(self) -> None:
        lws = self.seed_lws()
        lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] = 1.5
        assert crd_errors(lws) != []

    def test_duplicate_container_ports_in_a_list_map(self) -> None:
        lws = self.seed_lws()
        ports = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
        ports["ports"].append({"name": "again", "containerPort": 5005})  # protocol TCP by default
        assert any("duplicate" in e for e in crd_errors(lws))

    def test_an_unknown_container_field_under_the_kubernetes_schema(self) -> None:
        lws = self.seed_lws()
        lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["gpu"] = 8
        assert kubernetes_errors(lws, K8S_VERSIONS[0]) != []
        assert crd_errors(lws) != []

    def test_a_service_port_as_a_number_string(self) -> None:
        body, config = CASES["single-node-vllm"]
        service = of_kind(rendered(body, **config), "Service")
        service["spec"]["ports"][0]["port"] = "80"
        assert kubernetes_errors(service, K8S_VERSIONS[0]) != []

    def test_a_secret_whose_data_is_misplaced(self) -> None:
        body, config = CASES["seed"]
        secret = of_kind(rendered(body, **config), "Secret")
        secret["spec"] = {"data": secret.pop("data")}
        assert kubernetes_errors(secret, K8S_VERSIONS[0]) != []

    def test_a_label_value_too_long(self) -> None:
        assert label_problems({"team": "x" * 64}) != []


class TestTheCrdCopy:
    def test_the_repository_copy_is_a_leaderworkerset_crd_with_v1(self) -> None:
        crd = yaml.load(CRD_COPY.read_text(), Loader=yaml.CSafeLoader)
        assert crd["spec"]["names"]["kind"] == "LeaderWorkerSet"
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
        assert crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] == (
            ".spec.replicas"
        )

    def test_the_repository_copy_is_the_recorded_one_and_the_shared_one_where_it_exists(
        self,
    ) -> None:
        recorded = dict(
            reversed(line.split(maxsplit=1)) for line in CRD_SUMS.read_text().splitlines()
        )
        digest = hashlib.sha256(CRD_COPY.read_bytes()).hexdigest()
        assert recorded[CRD_NAME] == digest, (
            f"deploy/crds/{CRD_NAME} changed: record its new digest in deploy/crds/SHA256SUMS"
        )
        if SHARED_CRD.exists():  # beside the project's shared files: they must agree too
            assert CRD_COPY.read_bytes() == SHARED_CRD.read_bytes(), (
                f"deploy/crds/{CRD_NAME} differs from ../shared/schemas/; copy it over"
            )
