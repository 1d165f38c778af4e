import pytest

from llm_launch.config.loader import CatalogError, load_hardware_catalog, parse_hardware_catalog

REQUIRED = [
    "nvidia-tesla-t4",
    "nvidia-ampere-a10",
    "nvidia-ampere-a100",
    "nvidia-hopper-h100",
    "nvidia-hopper-h200",
]


def test_the_packaged_catalog_has_the_common_gpus_with_node_labels() -> None:
    catalog = load_hardware_catalog()
    for name in REQUIRED:
        gpu = catalog.get(name)
        assert gpu is not None, name
        assert gpu.node_selector
        assert gpu.max_gpus_per_node >= 1


def test_a_malformed_catalog_names_the_broken_entry() -> None:
    with pytest.raises(CatalogError, match=r"gpu_types\.bad"):
        parse_hardware_catalog({"gpu_types": {"bad": {"max_gpus_per_node": 8}}})
