"""The servers' protocol refuses, at start, a uvicorn whose request cycle it cannot build
(the forwarder runs on whatever uvicorn the engine image brought)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch import http_timeouts
from llm_launch.http_timeouts import header_timeout_protocol


def test_this_uvicorn_is_accepted() -> None:
    header_timeout_protocol(10.0)


def test_a_uvicorn_whose_cycle_takes_other_arguments_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OtherCycle:
        def __init__(self, scope: Any, transport: Any, conn: Any) -> None: ...

    monkeypatch.setattr(http_timeouts, "CoalescingCycle", OtherCycle)
    with pytest.raises(RuntimeError, match=r"uvicorn \d+\.\d+.* is not supported.*'conn'"):
        header_timeout_protocol(10.0)
