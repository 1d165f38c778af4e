"""The start-up check of the LeaderWorkerSet CRD (`crd_check.py`), through the real client
against the test API server serving the vendored CRD, an older-looking copy, none, or 403."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.backends.kubernetes.crd_check import (
    MINIMUM_LWS,
    LwsCrdUnsupported,
    representative_specs,
)
from llm_launch.domain.hardware import HardwareCatalog
from llm_launch.domain.validation import validate_spec
from tests.fakes.kube.crds import vendored
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.kubernetes.conftest import FAST

Object = dict[str, Any]


def lws_spec_schema(crd: Object) -> Object:
    schema: Object = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]  # type: ignore[no-any-return]


def a_crd_without(field: str) -> Object:
    """The vendored CRD as a release before `spec.<field>` existed would serve it."""
    crd = copy.deepcopy(vendored())
    del lws_spec_schema(crd)[field]
    return crd


async def test_the_backend_starts_when_the_crd_has_every_field_it_renders(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    await backend.start()
    assert any(a.resource == "customresourcedefinitions" for a in kube_api.accesses)


async def test_the_backend_refuses_to_start_naming_the_field_an_older_crd_lacks(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    kube_api.crds.set(a_crd_without("networkConfig"))
    with pytest.raises(LwsCrdUnsupported) as refused:
        await backend.start()
    assert "lacks spec.networkConfig" in refused.value.message
    assert f"install LWS >= {MINIMUM_LWS}" in refused.value.message


async def test_the_backend_refuses_to_start_when_a_rendered_value_is_not_in_the_crds_enum(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    crd = copy.deepcopy(vendored())
    startup = lws_spec_schema(crd)["startupPolicy"]
    startup["enum"] = [value for value in startup["enum"] if value != "LeaderCreated"]
    kube_api.crds.set(crd)
    with pytest.raises(
        LwsCrdUnsupported, match=r"does not allow spec\.startupPolicy='LeaderCreated'"
    ):
        await backend.start()


async def test_the_backend_refuses_to_start_when_the_crd_is_not_installed(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    kube_api.crds.remove()
    with pytest.raises(LwsCrdUnsupported, match="is not installed in this cluster"):
        await backend.start()


async def test_the_backend_refuses_to_start_when_the_crd_does_not_serve_v1(
    backend: KubernetesBackend, kube_api: FakeKubeApi
) -> None:
    crd = copy.deepcopy(vendored())
    crd["spec"]["versions"][0]["name"] = "v1beta1"
    kube_api.crds.set(crd)
    with pytest.raises(
        LwsCrdUnsupported, match=r"does not serve version v1 \(it serves: v1beta1\)"
    ):
        await backend.start()


async def test_the_backend_starts_with_a_warning_when_it_may_not_read_crds(
    backend: KubernetesBackend, kube_api: FakeKubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.crds.forbid()
    with caplog.at_level(logging.WARNING, logger="llm_launch.kubernetes"):
        await backend.start()
    assert "skipping its start-up check" in caplog.text
    assert "fieldValidation=Strict" in caplog.text


async def test_a_configuration_without_multi_node_endpoints_starts_without_the_crd(
    kube_api: FakeKubeApi, kubeconfig: Path
) -> None:
    config = KubernetesConfig(namespace="default", catalog=HardwareCatalog(gpu_types={}))
    backend = KubernetesBackend(config, str(kubeconfig), timing=FAST)
    kube_api.crds.remove()
    try:
        await backend.start()
    finally:
        await backend.close()
    assert not any(a.resource == "customresourcedefinitions" for a in kube_api.accesses)


def test_every_spec_the_check_renders_is_one_the_api_would_accept() -> None:
    # MIG slices run on one node only (no LeaderWorkerSet), so they bring no spec.
    config = KubernetesConfig(namespace="default")
    specs = representative_specs(config)
    for spec in specs:
        validate_spec(spec, config.catalog).raise_if_any()
    rendered_types = {spec.gpu_type for spec in specs}
    whole = {g.name for g in config.catalog.gpu_types.values() if g.mig is None}
    assert rendered_types == whole
