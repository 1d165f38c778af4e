"""Kubernetes resource quantities ("800Gi", "500m", "1.5e3"): parsing and validation.

Follows the grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal
number followed by a binary suffix (Ki..Ei), a decimal suffix (n, u, m, k, M, G,
T, P, E) or a decimal exponent (e3, E-2). Text longer than MAX_QUANTITY_CHARS and
exponents beyond +-MAX_QUANTITY_EXPONENT are refused before any arithmetic, so no
quantity can overflow (1e9999999 once raised decimal.Overflow, a 500).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from llm_launch.domain.limits import MAX_QUANTITY_CHARS, MAX_QUANTITY_EXPONENT

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)


def parse_quantity(text: str) -> Decimal:
    """Return the value of a Kubernetes quantity in base units; raise ValueError if malformed
    or of an absurd magnitude."""
    if isinstance(text, str) and len(text) > MAX_QUANTITY_CHARS:
        raise ValueError(f"a quantity has at most {MAX_QUANTITY_CHARS} characters")
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        shown = text if isinstance(text, str) else type(text).__name__
        raise ValueError(f"{shown!r} is not a Kubernetes quantity (examples: 800Gi, 16G, 500m, 4)")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    exponent = int(suffix[1:])
    if abs(exponent) > MAX_QUANTITY_EXPONENT:
        raise ValueError(
            f"{text!r}: a quantity's exponent must be within +-{MAX_QUANTITY_EXPONENT}"
        )
    return number.scaleb(exponent)


def is_quantity(text: str) -> bool:
    """True when `text` parses as a Kubernetes quantity."""
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True
