"""What the test API server stores on a create, an update (PUT, merge patch, a controller's
write through a hook, the scale subresource) and a server-side apply.

Each write, in the API server's order:
1. decoding and field validation (API reference, `fieldValidation` query parameter:
   "Strict ... will fail the request with a BadRequest error if any unknown fields would be
   dropped from the object, or if any duplicate fields are present"; "Warn" (the default)
   sends a warning header for each and goes on, dropping unknown fields (for a CRD that is
   structural pruning); "Ignore" drops them silently);
2. optimistic concurrency: a `metadata.resourceVersion` in the body that is not the
   stored one is a 409 Conflict, "the object has been modified; please apply your changes
   to the latest version and try again" ("API Concepts", resource versions; on an apply
   patch too, "Server-Side Apply", "Using Server-Side Apply in a controller");
3. field management (`ssa`), 409 with `FieldManagerConflict` causes on an apply conflict
   (k8s.io/apimachinery pkg/util/managedfields/internal/conflict.go: "Apply failed with
   N conflict(s): conflict with "manager": .path");
4. defaults (`schemas.apply_defaults`) and allocation (a Service's cluster IP, kept across
   updates as the Service registry does);
5. server-set metadata: uid, creationTimestamp, generation (bumped when spec changes),
   managedFields (manager, operation Apply|Update, apiVersion, time, FieldsV1).
The status of the main resource is never written by a client write (it belongs to the
status subresource); hooks acting as controllers may write it.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.kube import ssa
from tests.fakes.kube.builders import now
from tests.fakes.kube.http import RESOURCES, HttpError, details, qualified, status
from tests.fakes.kube.schemas import apply_defaults, prune, schema_for, unknown_fields

Object = dict[str, Any]
_SERVER_SET = ("uid", "creationTimestamp", "generation", "deletionTimestamp")
_cluster_ips = itertools.count(10)


@dataclass
class Write:
    """One write request: where, by whom, and what the answer should warn about."""

    plural: str
    namespace: str
    name: str
    manager: str
    validation: str = "Warn"  # the fieldValidation directive
    duplicates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    subresource: str = ""

    def entry(self, operation: str) -> ssa.Entry:
        api_version = RESOURCES[self.plural][0]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ssa.Entry(self.manager, operation, api_version, stamp, set(), self.subresource)


def create(write: Write, body: Object) -> Object:
    obj = validated(write, body, apply=False)
    obj.pop("status", None)
    return _finish(
        write, None, obj, ssa.update({}, obj, schema_for(write.plural), write.entry("Update"))
    )


def replace(write: Write, live: Object, body: Object, *, keep_status: bool = True) -> Object:
    """PUT, a merge patch's result, or a controller's write (keep_status=False: it may set
    status, as the status subresource would)."""
    new = validated(write, body, apply=False) if keep_status else copy.deepcopy(body)
    check_version(write, live, new)
    if keep_status:
        new.pop("status", None)
        if "status" in live:
            new["status"] = copy.deepcopy(live["status"])
    managers = ssa.update(_core(live), _core(new), schema_for(write.plural), write.entry("Update"))
    return _finish(write, live, new, managers)


def apply(write: Write, live: Object | None, body: Object, *, force: bool) -> Object:
    """A server-side apply of `body` (an applied configuration) over `live` (None: create)."""
    config = validated(write, body, apply=True)
    if live is not None:
        check_version(write, live, config)
    api_version, kind = RESOURCES[write.plural]
    base = live or {"apiVersion": api_version, "kind": kind, "metadata": {}}
    node = schema_for(write.plural)
    try:
        merged, managers = ssa.apply(
            _core(base), _core(config), node, write.entry("Apply"), force=force
        )
    except ssa.ConflictError as exc:
        raise HttpError(_conflict_status(exc.conflicts)) from None
    if live is not None and "status" in live:
        merged["status"] = copy.deepcopy(live["status"])
    return _finish(write, live, merged, managers)


def validated(write: Write, body: Any, *, apply: bool) -> Object:
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise HttpError(status(400, "BadRequest", "the body is not an object with metadata"))
    node = schema_for(write.plural)
    unknown = [path[1:] for path in unknown_fields(body, node)]
    problems = [f'unknown field "{p}"' for p in unknown]
    problems += [f'duplicate field "{d}"' for d in write.duplicates]
    if problems and write.validation == "Strict":
        if apply:
            api_version, kind = RESOURCES[write.plural]
            where = f"{write.namespace}/{write.name}; {api_version}, Kind={kind}"
            reasons = [f".{p}: field not declared in schema" for p in unknown]
            reasons += [f'duplicate field "{d}"' for d in write.duplicates]
            message = f"failed to create typed patch object ({where}): {'; '.join(reasons)}"
        else:
            message = "strict decoding error: " + ", ".join(problems)
        raise HttpError(status(400, "BadRequest", message))
    if write.validation != "Ignore":
        write.warnings.extend(problems)
    obj: Object = prune(copy.deepcopy(body), node)
    obj["metadata"]["namespace"] = write.namespace
    if obj["metadata"].get("name", write.name) != write.name:
        message = (
            f"the name of the object ({obj['metadata']['name']}) does not match the name on "
            f"the URL ({write.name})"
        )
        raise HttpError(status(400, "BadRequest", message))
    obj["metadata"]["name"] = write.name
    return obj


def check_version(write: Write, live: Object, new: Object) -> None:
    version = (new.get("metadata") or {}).get("resourceVersion")
    current = (live.get("metadata") or {}).get("resourceVersion")
    if version and live and version != current:
        message = (
            f'Operation cannot be fulfilled on {qualified(write.plural)} "{write.name}": the '
            "object has been modified; please apply your changes to the latest version and "
            "try again"
        )
        raise HttpError(status(409, "Conflict", message, details(write.plural, write.name)))


def unchanged(before: Object | None, after: Object) -> bool:
    """Whether a write changed nothing but managedFields timestamps (then the API server
    stores nothing: no new resourceVersion, no watch event)."""
    if before is None:
        return False
    return _timeless(before) == _timeless(after)


def _timeless(obj: Object) -> Object:
    copied = copy.deepcopy(obj)
    for entry in copied.get("metadata", {}).get("managedFields") or []:
        entry.pop("time", None)
    copied.get("metadata", {}).pop("resourceVersion", None)
    return copied


def _core(obj: Object) -> Object:
    return {k: v for k, v in obj.items() if k != "status"}


def _finish(write: Write, live: Object | None, obj: Object, managers: list[ssa.Entry]) -> Object:
    apply_defaults(write.plural, obj)
    if write.plural == "services":
        _allocate_cluster_ip(obj, live)
    metadata = obj.setdefault("metadata", {})
    old = (live or {}).get("metadata") or {}
    for name in _SERVER_SET:
        if name in old:
            metadata[name] = old[name]
    metadata.setdefault("uid", str(uuid.uuid4()))
    metadata.setdefault("creationTimestamp", now())
    metadata.setdefault("generation", 1)
    if live and obj.get("spec") != live.get("spec"):
        metadata["generation"] = old.get("generation", 1) + 1
    previous = {
        (e["manager"], e["operation"], e.get("subresource", "")): e
        for e in old.get("managedFields") or []
    }
    metadata["managedFields"] = [_entry_json(m, previous) for m in managers]
    return obj


def _entry_json(entry: ssa.Entry, previous: dict[tuple[str, str, str], Object]) -> Object:
    """An entry whose fields did not change keeps its time (the server rewrites an entry
    only when that manager's set changes)."""
    encoded = entry.to_json()
    old = previous.get(entry.identity)
    if old is not None and old.get("fieldsV1") == encoded["fieldsV1"]:
        encoded["time"] = old.get("time", encoded["time"])
    return encoded


def _allocate_cluster_ip(obj: Object, live: Object | None) -> None:
    """A ClusterIP Service gets an address from the service CIDR; an update that leaves it
    out keeps the allocated one (Service registry, `patchAllocatedValues`)."""
    spec = obj.setdefault("spec", {})
    if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer"):
        return
    kept = ((live or {}).get("spec") or {}).get("clusterIP")
    spec.setdefault("clusterIP", kept or f"10.96.0.{next(_cluster_ips) % 250 + 2}")
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv6" if ":" in spec["clusterIP"] else "IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")


def _conflict_status(conflicts: list[ssa.Conflict]) -> Object:
    """k8s.io/apimachinery pkg/util/managedfields/internal/conflict.go, NewConflictError."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{c.manager}"',
            "field": ssa.path_string(c.path),
        }
        for c in conflicts
    ]
    if len(conflicts) == 1:
        c = conflicts[0]
        message = (
            f'Apply failed with 1 conflict: conflict with "{c.manager}": {ssa.path_string(c.path)}'
        )
    else:
        lines = []
        for manager in sorted({c.manager for c in conflicts}):
            lines.append(f'conflicts with "{manager}":')
            lines += [f"- {ssa.path_string(c.path)}" for c in conflicts if c.manager == manager]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return status(409, "Conflict", message, {"causes": causes})
