"""Quota settings: limits, per-owner overrides given with the keys, and their conflicts."""

from __future__ import annotations

import pytest

from llm_launch.config.api_keys import ApiKeyConfigError, parse_api_keys
from llm_launch.config.quotas import DEFAULT_QUOTA, QuotaBook, QuotaConfigError, parse_limit
from llm_launch.domain.quotas import Quota

KEY_A = "a" * 20
KEY_B = "b" * 20


def test_a_limit_is_a_whole_number_or_unlimited() -> None:
    assert parse_limit("16", "x") == 16
    assert parse_limit("Unlimited", "x") is None
    for bad in ("-1", "1.5", "", "many"):
        with pytest.raises(QuotaConfigError, match="x: expected a whole number"):
            parse_limit(bad, "x")


def test_an_owner_gets_the_defaults_with_its_own_options_over_them() -> None:
    keys = parse_api_keys(
        f"alice:{KEY_A} max_gpus=16 max_endpoints=unlimited\nbob:{KEY_B}", source="f"
    )
    book = QuotaBook(DEFAULT_QUOTA, keys.quota_overrides)
    assert book.for_owner("alice") == Quota(max_endpoints=None, max_groups=100, max_gpus=16)
    assert book.for_owner("bob") == DEFAULT_QUOTA
    assert book.for_owner("local") == DEFAULT_QUOTA


def test_an_owners_keys_may_repeat_its_quota_but_not_contradict_it() -> None:
    same = parse_api_keys(f"alice:{KEY_A} max_gpus=16\nalice:{KEY_B} max_gpus=16", source="f")
    assert same.quota_overrides == {"alice": {"max_gpus": 16}}
    with pytest.raises(ApiKeyConfigError, match="owner 'alice' has max_gpus=8") as error:
        parse_api_keys(f"alice:{KEY_A} max_gpus=16\nalice:{KEY_B} max_gpus=8", source="f")
    assert KEY_A not in str(error.value) and KEY_B not in str(error.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("max_gpu=8", "word 1 after the key is not a quota option"),
        ("max_gpus=8 max_gpus=8", "max_gpus is given twice"),
        ("max_groups=lots", "max_groups: expected a whole number"),
    ],
)
def test_malformed_quota_options_are_refused_saying_where(options: str, words: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=words):
        parse_api_keys(f"alice:{KEY_A} {options}", source="keys.txt")
