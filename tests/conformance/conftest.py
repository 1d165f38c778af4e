"""Fixtures for the SGLang conformance tests: SGLang's own parser, installed once a session."""

from __future__ import annotations

import pytest

from tests.support.sglang_parser import SglangParser, ensure_sglang_parser


@pytest.fixture(scope="session")
def sglang() -> SglangParser:
    """SGLang 0.5.23's parser in its own virtualenv; installs it first if needed (never skips:
    a failed install is an error of every test that needs it)."""
    return SglangParser(ensure_sglang_parser())
