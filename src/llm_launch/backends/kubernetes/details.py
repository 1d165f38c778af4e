"""GET's per-group detail (`spec.groups`) on Kubernetes, from the pod cache. Pure functions.

Caller: `backend.KubernetesBackend.group_details`, with the endpoint's workload, its pods
from the watch cache and the group recreations of `history`. Each group lists its pods'
containers as processes ("rank-N" for a rank's engine, "forwarder" for the leader's), its
phase in one line, its restarts (recreations of the group plus the engine containers'
restart counts) and the last termination the kubelet recorded (`lastState.terminated`:
exit code, reason, when), as the local backend shows its processes.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from llm_launch.backends.kubernetes.history import Recreations, describe_exit
from llm_launch.backends.kubernetes.render_names import ANNOTATION_GENERATION
from llm_launch.backends.kubernetes.status import PodView, Workload, pod_views
from llm_launch.domain.groups import CauseKind, GroupCause, GroupDetail, ProcessDetail
from llm_launch.engines.common import ENGINE_CONTAINER, FORWARDER_CONTAINER

Object = dict[str, Any]


def group_details(
    workload: Workload, pods: Sequence[Object], recreations: Mapping[int, Recreations]
) -> list[GroupDetail]:
    groups: dict[int, list[PodView]] = {}
    for view in pod_views(workload, pods):
        groups.setdefault(view.group, []).append(view)
    size = _group_size(workload)
    return [
        _detail(index, members, size, recreations.get(index))
        for index, members in sorted(groups.items())
    ]


def _detail(
    index: int, members: list[PodView], size: int, recreated: Recreations | None
) -> GroupDetail:
    containers = [(view, status) for view in members for status in _statuses(view.pod)]
    engine_restarts = sum(
        int(s.get("restartCount") or 0) for _, s in containers if s.get("name") == ENGINE_CONTAINER
    )
    forwarder_restarts = sum(
        int(s.get("restartCount") or 0)
        for _, s in containers
        if s.get("name") == FORWARDER_CONTAINER
    )
    ready = len(members) >= size and all(view.ready for view in members)
    return GroupDetail(
        index=index,
        generation=_generation(members[0].pod),
        ready=ready,
        phase="ready" if ready else _phase(members, size),
        restarts=(recreated.count if recreated else 0) + engine_restarts,
        forwarder_restarts=forwarder_restarts,
        last_cause=_last_termination(containers),
        processes=tuple(
            ProcessDetail(_process_name(view, s), None, "running" in (s.get("state") or {}))
            for view, s in containers
            if s.get("name") in (ENGINE_CONTAINER, FORWARDER_CONTAINER)
        ),
    )


def _phase(members: list[PodView], size: int) -> str:
    for view in members:
        if view.ready:
            continue
        status = view.pod.get("status") or {}
        for container in _statuses(view.pod):
            waiting = (container.get("state") or {}).get("waiting")
            if waiting:
                why = waiting.get("reason") or "waiting"
                return f"{view.role}: {why} (container {container.get('name')})"
        return f"{view.role}: pod {status.get('phase') or 'Pending'}, not ready yet"
    return f"{len(members)} of {size} pods created"


def _last_termination(containers: list[tuple[PodView, Object]]) -> GroupCause | None:
    found: list[GroupCause] = []
    for view, status in containers:
        terminated = (status.get("lastState") or {}).get("terminated")
        at = _time((terminated or {}).get("finishedAt"))
        if not terminated or at is None:
            continue
        forwarder = status.get("name") == FORWARDER_CONTAINER
        code = terminated.get("exitCode")
        kind = CauseKind.FORWARDER_EXITED if forwarder else CauseKind.EXITED
        cause = GroupCause(kind, _process_name(view, status), describe_exit(terminated), at)
        if isinstance(code, int):
            cause = replace(cause, exit_code=code, signal=_signal_of(code))
        found.append(cause)
    return max(found, key=lambda cause: cause.at, default=None)


def _process_name(view: PodView, status: Object) -> str:
    return "forwarder" if status.get("name") == FORWARDER_CONTAINER else f"rank-{view.rank}"


def _signal_of(code: int) -> str | None:
    """A container's exit code over 128 is a signal's (137: SIGKILL), as in a shell."""
    if code <= 128:
        return None
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return None


def _statuses(pod: Object) -> list[Object]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _generation(pod: Object) -> int | None:
    value = str(((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_GENERATION))
    return int(value) if value.isdigit() else None


def _group_size(workload: Workload) -> int:
    if workload.kind != "LeaderWorkerSet":
        return 1
    spec = (workload.obj or {}).get("spec") or {}
    return int((spec.get("leaderWorkerTemplate") or {}).get("size") or 1)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
