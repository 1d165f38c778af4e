"""Render `engine_args` (a JSON object) as argv items, without any shell in between.

Each value becomes its own argv item, so spaces, quotes and JSON survive intact, and a
value is joined to its flag with `=` so one that starts with `-` is not read as a flag:
    {"context-length": 8192}        -> ["--context-length=8192"]
    {"enable-metrics": true}        -> ["--enable-metrics"]
    {"disable-cuda-graph": false}   -> []          (a store_true flag left off)
    {"cuda-graph-bs": [1, 2, 4]}    -> ["--cuda-graph-bs", "1", "2", "4"]   (nargs lists)
    {"json-model-override-args": {"a": 1}} -> ['--json-model-override-args={"a": 1}']
Validation (domain/validation.py) refuses empty lists and list items starting with `-`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm_launch.domain.frameworks import flag_name


def render_engine_args(engine_args: Mapping[str, Any]) -> tuple[str, ...]:
    argv: list[str] = []
    for key in sorted(engine_args):
        value = engine_args[key]
        flag = f"--{flag_name(key)}"
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            argv += [flag, *(_scalar(item) for item in value)]
        else:
            argv.append(f"{flag}={_scalar(value)}")
    return tuple(argv)


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
