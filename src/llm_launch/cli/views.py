"""How `llm-launch endpoints` shows endpoints: the list as a table that fits 80 columns
(the reason shortened with an ellipsis) or a wide one (every column, the full reason),
any answer as JSON or YAML, and the lines of the `--wait` view.

Pure formatting of the API's answers (dicts, as GET and list return them): no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import yaml

WIDTH = 80  # the default table fits a classic terminal
MIN_REASON = 16  # a very long name may push a row past WIDTH rather than hide its reason
GAP = "  "
ELLIPSIS = "…"


class Output(StrEnum):
    """`-o`: how `list` and `get` print endpoints."""

    TABLE = "table"  # fits 80 columns
    WIDE = "wide"  # more columns, the full reason
    JSON = "json"
    YAML = "yaml"


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis where it was cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + ELLIPSIS


def render(endpoints: Sequence[Mapping[str, Any]], output: Output) -> str:
    """The endpoints as `output` says; a table has a header line even when empty."""
    if output is Output.JSON:
        return json.dumps(list(endpoints), indent=2, default=str) + "\n"
    if output is Output.YAML:
        return yaml.safe_dump(list(endpoints), sort_keys=False, allow_unicode=True)
    return "".join(f"{line}\n" for line in table(endpoints, wide=output is Output.WIDE))


def render_one(endpoint: Mapping[str, Any], output: Output) -> str:
    """One endpoint (`get`): JSON and YAML show the object itself, not a list of one."""
    if output is Output.JSON:
        return json.dumps(endpoint, indent=2, default=str) + "\n"
    if output is Output.YAML:
        return yaml.safe_dump(dict(endpoint), sort_keys=False, allow_unicode=True)
    return render([endpoint], output)


def table(endpoints: Iterable[Mapping[str, Any]], *, wide: bool) -> list[str]:
    """Aligned columns; the last, the reason, is shortened to fit WIDTH unless `wide`."""
    headers = WIDE_COLUMNS if wide else COLUMNS
    rows = [_cells(e, headers) for e in endpoints]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    used = sum(widths) + len(GAP) * len(widths)
    room = max(WIDTH - used, MIN_REASON)
    lines = []
    for cells in [list(headers), *rows]:
        reason = cells[-1] if wide else shorten(cells[-1], room)
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        lines.append(GAP.join([*padded, reason]).rstrip())
    return lines


COLUMNS = ("NAME", "STATUS", "WORKERS", "REASON")
WIDE_COLUMNS = ("NAME", "FRAMEWORK", "MODEL", "STATUS", "WORKERS", "NODES", "GPUS", "UPDATED",
                "REASON")  # fmt: skip


def _cells(endpoint: Mapping[str, Any], headers: Sequence[str]) -> list[str]:
    spec = endpoint.get("spec") or {}
    deployment, resources = spec.get("deployment_state") or {}, spec.get("resource_state") or {}
    values = {
        "NAME": endpoint.get("name", ""),
        "FRAMEWORK": endpoint.get("inference_framework", ""),
        "MODEL": endpoint.get("model_name", ""),
        "STATUS": endpoint.get("status", ""),
        "WORKERS": f"{deployment.get('available_workers', '?')}/"
        f"{deployment.get('min_workers', '?')}-{deployment.get('max_workers', '?')}",
        "NODES": str(resources.get("nodes_per_worker", "")),
        "GPUS": f"{resources.get('gpus', 0)} x {resources.get('gpu_type') or '-'}",
        "UPDATED": str(spec.get("last_updated_at", ""))[:19].replace("T", " "),
        "REASON": " ".join(str(spec.get("status_reason") or "").split()),
    }
    return [str(values[h]) for h in headers]


def progress_lines(endpoint: Mapping[str, Any]) -> dict[str, str]:
    """What the `--wait` view shows, by key ("status", then "group N" for each group
    GET's `spec.groups` reports; a server without it shows the status alone)."""
    spec = endpoint.get("spec") or {}
    deployment = spec.get("deployment_state") or {}
    status = str(endpoint.get("status", "?"))
    workers = f"{deployment.get('available_workers', '?')}/{deployment.get('min_workers', '?')}"
    reason = " ".join(str(spec.get("status_reason") or "").split())
    lines = {"status": f"{status} ({workers} groups ready)" + (f": {reason}" if reason else "")}
    for group in spec.get("groups") or []:
        if isinstance(group, Mapping):
            lines[f"group {group.get('index', '?')}"] = _group_line(group)
    return lines


def _group_line(group: Mapping[str, Any]) -> str:
    line = f"  group {group.get('index', '?')}: {group.get('phase') or '?'}"
    restarts = group.get("restarts") or 0
    if restarts:
        line += f" (recreated {restarts}x)"
    forwarder_restarts = group.get("forwarder_restarts") or 0
    if forwarder_restarts:
        line += f" (forwarder restarted {forwarder_restarts}x)"
    return line
