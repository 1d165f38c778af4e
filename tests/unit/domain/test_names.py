import pytest

from llm_launch.domain.names import (
    dns1123_label_problem,
    label_key_problem,
    label_value_problem,
    max_name_length,
)


def test_multinode_names_leave_room_for_the_prefix_within_the_lws_limit() -> None:
    assert max_name_length(nodes_per_worker=2, max_workers=1) == 40
    assert max_name_length(nodes_per_worker=2, max_workers=10) == 39
    assert max_name_length(nodes_per_worker=2, max_workers=99) == 31
    assert max_name_length(nodes_per_worker=1, max_workers=99) == 52


@pytest.mark.parametrize("name", ["a", "deepseek-r1", "x" * 63, "0abc"])
def test_dns_labels_are_accepted(name: str) -> None:
    assert dns1123_label_problem(name) is None


@pytest.mark.parametrize("name", ["", "A", "a_b", "-a", "a-", "x" * 64, "a.b"])
def test_non_dns_labels_are_rejected(name: str) -> None:
    assert dns1123_label_problem(name) is not None


@pytest.mark.parametrize("key", ["team", "example.com/team", "a.b_c-d", "x" * 63])
def test_valid_label_keys(key: str) -> None:
    assert label_key_problem(key) is None


@pytest.mark.parametrize(
    "key",
    ["", "a/b/c", "Example.com/x", "x" * 64, "-team", "llm-launch.io/owner", "a.llm-launch.io/x"],
)
def test_invalid_label_keys(key: str) -> None:
    assert label_key_problem(key) is not None


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("inference.llm_model_zoo", True), ("-x", False), ("x" * 64, False)],
)
def test_label_values(value: str, ok: bool) -> None:
    assert (label_value_problem(value) is None) is ok
