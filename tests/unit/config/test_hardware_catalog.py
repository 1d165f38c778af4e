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


# Every GPU type of Launch's GpuType enum (scaleapi/llm-engine, llms dtos).
LAUNCH_GPU_TYPES = [
    "nvidia-tesla-t4",
    "nvidia-ampere-a10",
    "nvidia-ampere-a100",
    "nvidia-ampere-a100e",
    "nvidia-hopper-h100",
    "nvidia-hopper-h100-1g20gb",
    "nvidia-hopper-h100-3g40gb",
]


@pytest.mark.parametrize("name", LAUNCH_GPU_TYPES)
def test_every_launch_gpu_type_is_in_the_packaged_catalog(name: str) -> None:
    gpu = load_hardware_catalog().get(name)
    assert gpu is not None and gpu.node_selector


@pytest.mark.parametrize(
    ("name", "resource", "profile", "per_gpu", "per_node"),
    [
        ("nvidia-hopper-h100-1g20gb", "nvidia.com/mig-1g.20gb", "1g.20gb", 4, 32),
        ("nvidia-hopper-h100-3g40gb", "nvidia.com/mig-3g.40gb", "3g.40gb", 2, 16),
    ],
)
def test_the_h100_mig_slices_carry_their_resource_profile_and_counts(
    name: str, resource: str, profile: str, per_gpu: int, per_node: int
) -> None:
    catalog = load_hardware_catalog()
    gpu = catalog.get(name)
    assert gpu is not None and gpu.mig is not None
    assert gpu.resource_name("nvidia.com/gpu") == resource
    assert (gpu.mig.profile, gpu.mig.whole_gpu, gpu.mig.slices_per_gpu) == (
        profile,
        "nvidia-hopper-h100",
        per_gpu,
    )
    assert catalog.slices_per_node(gpu) == per_node
    assert gpu.max_gpus_per_node == 1


def test_a_whole_gpu_is_requested_as_the_installation_s_gpu_resource() -> None:
    gpu = load_hardware_catalog().get("nvidia-hopper-h100")
    assert gpu is not None and gpu.mig is None and gpu.resource is None
    assert gpu.resource_name("amd.com/gpu") == "amd.com/gpu"


def a_catalog(**slice_entry: object) -> dict[str, object]:
    """A catalog of an H100 and one MIG slice of it; keywords replace the slice's keys."""
    entry: dict[str, object] = {
        "gpu_memory_gib": 20,
        "resource": "nvidia.com/mig-1g.20gb",
        "mig": {"profile": "1g.20gb", "whole_gpu": "h100", "slices_per_gpu": 4},
    }
    entry.update(slice_entry)
    return {"gpu_types": {"h100": {"gpu_memory_gib": 80}, "slice": entry}}


def test_a_mig_entry_defaults_to_one_slice_per_request() -> None:
    gpu = parse_hardware_catalog(a_catalog()).get("slice")
    assert gpu is not None and gpu.max_gpus_per_node == 1


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"resource": "mig-1g.20gb"}, "resource: 'mig-1g.20gb' is not a device plugin's"),
        ({"max_gpus_per_node": 4}, "max_gpus_per_node must be 1 for a MIG slice"),
        (
            {"mig": {"profile": "1g.20gb", "whole_gpu": "b200", "slices_per_gpu": 4}},
            "mig.whole_gpu: 'b200' is not a whole-GPU type",
        ),
        (
            {"mig": {"profile": "1g.20gb", "whole_gpu": "slice", "slices_per_gpu": 4}},
            "mig.whole_gpu: 'slice' is not a whole-GPU type",
        ),
        (
            {"mig": {"profile": "20gb", "whole_gpu": "h100", "slices_per_gpu": 4}},
            "mig.profile: '20gb' is not a MIG profile name",
        ),
        (
            {"mig": {"profile": "1g.20gb", "whole_gpu": "h100", "slices_per_gpu": 8}},
            "mig.slices_per_gpu must be 1 to 7",
        ),
        ({"mig": {"profile": "1g.20gb"}}, "gpu_types.slice is malformed"),
        ({"mig": "1g.20gb"}, "gpu_types.slice is malformed"),
    ],
)
def test_a_broken_mig_entry_is_refused_naming_the_entry_and_why(
    entry: dict[str, object], words: str
) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_hardware_catalog(a_catalog(**entry))
    assert "gpu_types.slice" in str(raised.value)
    assert words in str(raised.value)
