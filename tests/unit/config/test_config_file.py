"""The installation configuration file (config/kubernetes.py): what it sets, what it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_launch.backends.kubernetes.config import PriorityClasses, WeightsVolume
from llm_launch.config.kubernetes import ConfigFileError, load_installation_config
from llm_launch.engines.plan import IpFamily

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "config.example.yaml"


def load(tmp_path: Path, data: Any, **overrides: Any) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    flags = {key.replace("__", "."): value for key, value in overrides.items()}
    return load_installation_config(path, flags)


def refused(tmp_path: Path, data: Any, **overrides: Any) -> str:
    with pytest.raises(ConfigFileError) as caught:
        load(tmp_path, data, **overrides)
    return str(caught.value)


def test_the_example_file_loads_with_its_images_tags_and_timings() -> None:
    config = load_installation_config(EXAMPLE)
    assert config.kubernetes.namespace == "llm-launch"
    assert config.kubernetes.image_tags["sglang"]["multinode-latest-2"] == "v0.5.21"
    assert config.timing.retry.jitter == 0.2
    assert config.timing.watch.stream_timeout_s == 240


def test_nested_sections_set_only_the_keys_given_and_keep_the_other_defaults(
    tmp_path: Path,
) -> None:
    config = load(
        tmp_path,
        {
            "kubernetes": {
                "plan_options": {"ip_family": "ipv6", "socket_ifname": "ib0"},
                "priority_classes": {"high": "llm-high"},
                "weights_volume": "pvc:model-cache",
                "image_pull_secrets": ["registry"],
                "forwarder_cpu": 2,
            },
            "timing": {"unschedulable_timeout_s": 60, "retry": {"max_s": 30}},
        },
    )
    k = config.kubernetes
    assert k.plan_options.ip_family is IpFamily.IPV6
    assert k.plan_options.socket_ifname == "ib0"
    assert k.plan_options.startup_budget_s == 1800
    assert k.priority_classes == PriorityClasses(high="llm-high", default=None)
    assert k.weights_volume == WeightsVolume("pvc", claim_name="model-cache")
    assert k.image_pull_secrets == ("registry",)
    assert k.forwarder_cpu == "2"
    assert config.timing.unschedulable_timeout_s == 60.0
    assert config.timing.retry.max_s == 30.0 and config.timing.retry.initial_s == 1.0


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    data = {"kubernetes": {"namespace": "from-file", "plan_options": {"hang_restart_s": 9}}}
    config = load(
        tmp_path,
        data,
        kubernetes__namespace="from-flag",
        kubernetes__plan_options__hang_restart_s=40,
        kubernetes__weights_volume="hostPath:/var/cache/llm",
    )
    assert config.kubernetes.namespace == "from-flag"
    assert config.kubernetes.plan_options.hang_restart_s == 40
    assert config.kubernetes.weights_volume.host_path == "/var/cache/llm"


def test_an_unknown_key_is_refused_with_its_path_and_the_closest_known_key(
    tmp_path: Path,
) -> None:
    message = refused(tmp_path, {"kubernetes": {"image_pull_polcy": "Always"}, "timng": {}})
    assert (
        "kubernetes.image_pull_polcy: unknown key; did you mean kubernetes.image_pull_policy?"
        in message
    )
    assert "timng: unknown key; did you mean timing?" in message


def test_wrong_types_are_refused_naming_the_key_and_the_type(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        {
            "kubernetes": {
                "service_port": "eighty",
                "prometheus_annotations": "yes please",
                "image_pull_secrets": "registry",
                "plan_options": {"ports": {"engine": True}},
            }
        },
    )
    assert "kubernetes.service_port: must be an integer (got 'eighty')" in message
    assert "kubernetes.prometheus_annotations: must be true or false" in message
    assert "kubernetes.image_pull_secrets: must be a list" in message
    assert "kubernetes.plan_options.ports.engine: must be an integer (got True)" in message


def test_bad_values_are_refused_with_the_dataclasses_own_reason(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        {
            "kubernetes": {
                "image_pull_policy": "Sometimes",
                "image_tags": {"sglang": {"v1": "not a tag!"}, "vllm": {"v1": "v1"}},
                "plan_options": {"ip_family": "ipv5", "startup_budget_s": 0},
                "weights_volume": "nfs:/x",
            },
            "timing": {"resync_s": 0, "retry": {"jitter": 1.5}},
        },
    )
    assert "kubernetes.weights_volume: weights volume 'nfs:/x'" in message
    assert "kubernetes.plan_options.ip_family: must be one of auto, ipv4, ipv6" in message
    assert "timing.resync_s: must be > 0 seconds" in message
    assert "timing.retry.jitter: must be in [0, 1)" in message
    fixed = {"weights_volume": "emptyDir", "plan_options": {"startup_budget_s": 0}}
    message = refused(tmp_path, {"kubernetes": {**fixed, "image_pull_policy": "Sometimes"}})
    assert "kubernetes: image_pull_policy must be one of Always, IfNotPresent, Never" in message
    message = refused(
        tmp_path, {"kubernetes": {"image_tags": {"sglang": {"v1": "not a tag!"}, "vllm": {}}}}
    )
    assert "image_tags.sglang.v1: 'not a tag!' is neither an image tag nor a digest" in message
    assert "image_tags.vllm: offers no tag" in message
    message = refused(tmp_path, {"kubernetes": {"plan_options": {"startup_budget_s": 0}}})
    assert "kubernetes.plan_options.startup_budget_s: must be >= 1" in message


def test_the_catalog_is_refused_in_the_file_pointing_at_its_own_option(tmp_path: Path) -> None:
    message = refused(tmp_path, {"kubernetes": {"catalog": {}}})
    assert "kubernetes.catalog: not set in this file" in message
    assert "--hardware-catalog" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kubernetes: [1, 2\n", "not valid YAML (line 2"),
        ("- a list\n", "must be a mapping with kubernetes, timing sections"),
        ("kubernetes: 3\n", "kubernetes: must be a mapping (got 3)"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_sections_is_refused_without_a_traceback(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in refused(tmp_path, text)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"missing\.yaml: cannot read it"):
        load_installation_config(tmp_path / "missing.yaml")


def test_the_kubernetes_backend_is_built_with_the_files_configuration_and_timings(
    tmp_path: Path,
) -> None:
    from llm_launch.api.app import make_backend
    from llm_launch.backends.kubernetes.backend import KubernetesBackend
    from llm_launch.settings import Settings

    installation = load(
        tmp_path,
        {
            "kubernetes": {"namespace": "inference", "priority_classes": {"high": "x"}},
            "timing": {"resync_s": 42},
        },
    )
    settings = Settings(database_url="sqlite://", backend="kubernetes", installation=installation)
    backend = make_backend(settings)
    assert isinstance(backend, KubernetesBackend)
    assert backend.config is installation.kubernetes
    assert backend._timing.resync_s == 42.0


def _settable_keys(cls: type, prefix: str) -> set[str]:
    """Every key path the file may set for `cls`, nested dataclasses walked (a dataclass
    that also reads a string, such as the weights volume, is one key)."""
    import dataclasses
    import typing

    from llm_launch.config.kubernetes import NOT_IN_FILE

    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}"
        if not f.init or path in NOT_IN_FILE:
            continue
        hint = hints[f.name]
        nested = isinstance(hint, type) and dataclasses.is_dataclass(hint)
        if nested and not callable(getattr(hint, "parse", None)):
            keys |= _settable_keys(hint, path)
        else:
            keys.add(path)
    return keys


def _keys_in(data: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        keys.add(path)
        if isinstance(value, dict):
            keys |= _keys_in(value, path)
    return keys


def test_the_example_file_shows_every_setting_the_file_may_hold() -> None:
    """A setting added to KubernetesConfig or KubernetesTiming must be documented in the
    example an operator copies."""
    from llm_launch.config.kubernetes import SECTIONS

    wanted: set[str] = set()
    for section, cls in SECTIONS.items():
        wanted |= _settable_keys(cls, section)
    shown = _keys_in(yaml.safe_load(EXAMPLE.read_text()))
    assert sorted(wanted - shown) == []
