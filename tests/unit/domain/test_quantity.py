from decimal import Decimal

import pytest

from llm_launch.domain.quantity import is_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("800Gi", Decimal(800 * 2**30)),
        ("16G", Decimal(16 * 10**9)),
        ("500m", Decimal("0.5")),
        ("4", Decimal(4)),
        ("1.5e3", Decimal(1500)),
        (".5Ki", Decimal(512)),
    ],
)
def test_valid_quantities_parse_to_base_units(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["32GB", "1 Gi", "", "Gi", "1.2.3", " 4", "1e", "lots"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    assert not is_quantity(text)
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)
