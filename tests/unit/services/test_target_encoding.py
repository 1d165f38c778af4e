"""The stored form of an endpoint's ready targets (services/routing_table.py)."""

from __future__ import annotations

import pytest

from llm_launch.services.routing_table import decode_targets, encode_targets


def test_the_same_targets_in_another_order_are_stored_as_the_same_text() -> None:
    assert encode_targets(["http://b", "http://a"]) == encode_targets(["http://a", "http://b"])


def test_no_ready_target_is_stored_as_null_and_read_back_as_none() -> None:
    assert encode_targets([]) is None
    assert decode_targets(None) == []


def test_stored_targets_read_back_as_they_were_written() -> None:
    assert decode_targets(encode_targets(["http://b", "http://a"])) == ["http://a", "http://b"]


@pytest.mark.parametrize("stored", ["not json", '{"a": 1}', "[1, null]", ""])
def test_a_stored_value_that_is_not_a_list_of_urls_routes_nowhere(stored: str) -> None:
    assert decode_targets(stored) == []
