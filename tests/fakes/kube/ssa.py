"""Server-side apply and field ownership, as sigs.k8s.io/structured-merge-diff does it.

Followed: the Kubernetes docs "Server-Side Apply" (field management, conflicts, merge
strategy, "Transferring ownership", and: "If you remove a field from a manifest and apply
that manifest, Server-Side Apply checks for any other field managers that also own the
field. If the field is not owned by any other field managers, it is either deleted from the
live object or reset to its default value, if it has one"), and structured-merge-diff's
`merge.Updater` (Apply: conflicts, then removal of what the applier stopped sending;
Update: the writer takes every field it changed, from everyone) and `fieldpath` (FieldsV1).

A field set is a set of paths; a path is a tuple of elements, as FieldsV1 spells them:
`("f", name)` a field, `("k", '{"name":"engine"}')` a list item by its keys (sorted, compact
JSON), `("v", '"x"')` an item of a set. What an applier owns is every leaf it sent and every
list item it sent (the item itself, `.` in FieldsV1, and its fields). Stripped, as the API
server strips them: apiVersion, kind, status and the server-set metadata.

Not imitated: ownership of status (written through the status subresource), the
`x-kubernetes-map-type: granular` corner cases, and conflicts on atomic parents of a field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.fakes.kube.schemas import ANY, Node

Object = dict[str, Any]
Element = tuple[str, str]
Path = tuple[Element, ...]
MISSING: Any = object()
_STRIPPED: set[Path] = {
    (("f", "apiVersion"),),
    (("f", "kind"),),
    (("f", "status"),),
    *{
        (("f", "metadata"), ("f", name))
        for name in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        )
    },
}


@dataclass
class Conflict:
    manager: str
    path: Path


class ConflictError(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(f"{len(conflicts)} conflicts")
        self.conflicts = conflicts


# -- paths ------------------------------------------------------------------------------------
def _key(item: Any, node: Node) -> Element:
    if node.list_type == "set" or not isinstance(item, dict):
        return ("v", json.dumps(item, separators=(",", ":")))
    keys = {k: item.get(k, node.key_default(k)) for k in node.map_keys}
    return ("k", json.dumps(dict(sorted(keys.items())), separators=(",", ":")))


def _granular_list(value: Any, node: Node) -> bool:
    return isinstance(value, list) and node.list_type in ("map", "set")


def field_set(value: Any, node: Node, prefix: Path = ()) -> set[Path]:
    """The paths an object (or applied configuration) sets."""
    if isinstance(value, dict) and not node.atomic and value:
        found: set[Path] = set()
        for name, child in value.items():
            found |= field_set(child, node.field(name) or ANY, (*prefix, ("f", name)))
        return found - _STRIPPED if not prefix else found
    if _granular_list(value, node) and value:
        found = set()
        for item in value:
            path = (*prefix, _key(item, node))
            found.add(path)
            if node.list_type == "map" and isinstance(item, dict):
                found |= field_set(item, node.items(), path) - {path}
        return found
    return {prefix} if prefix else set()


def path_string(path: Path) -> str:
    """`.spec.replicas`, `.spec.ports[port=80,protocol="TCP"]`, as structured-merge-diff
    prints a path in a conflict."""
    out = ""
    for kind, text in path:
        if kind == "f":
            out += f".{text}"
        elif kind == "k":
            keys = json.loads(text)
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            out += f"[={text}]"
    return out


def _child(value: Any, element: Element, node: Node) -> tuple[Any, Node]:
    kind, text = element
    if kind == "f":
        if not isinstance(value, dict) or text not in value:
            return MISSING, ANY
        return value[text], node.field(text) or ANY
    if not isinstance(value, list):
        return MISSING, ANY
    for item in value:
        if _key(item, node) == element:
            return item, node.items()
    return MISSING, ANY


def value_at(obj: Any, path: Path, node: Node) -> Any:
    for element in path:
        obj, node = _child(obj, element, node)
        if obj is MISSING:
            return MISSING
    return obj


def remove(obj: Object, path: Path, node: Node) -> None:
    """Delete the field or list item at `path`, if there."""
    parent: Any = obj
    for element in path[:-1]:
        parent, node = _child(parent, element, node)
        if parent is MISSING:
            return
    kind, text = path[-1]
    if kind == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif isinstance(parent, list):
        parent[:] = [item for item in parent if _key(item, node) != path[-1]]


# -- merging ----------------------------------------------------------------------------------
def merge(live: Any, config: Any, node: Node) -> Any:
    """`config` over `live`: structs and maps field by field, map and set lists item by item
    (live order, new items after), everything else (atomic) replaced whole."""
    if isinstance(live, dict) and isinstance(config, dict) and not node.atomic:
        result = copy.deepcopy(live)
        for name, value in config.items():
            child = node.field(name) or ANY
            result[name] = merge(live.get(name, MISSING), value, child)
        return result
    if isinstance(live, list) and _granular_list(config, node):
        result_list = copy.deepcopy(live)
        where = {_key(item, node): index for index, item in enumerate(result_list)}
        for item in config:
            key = _key(item, node)
            if key in where:
                result_list[where[key]] = merge(result_list[where[key]], item, node.items())
            else:
                where[key] = len(result_list)
                result_list.append(copy.deepcopy(item))
        return result_list
    return copy.deepcopy(config)


# -- managedFields ----------------------------------------------------------------------------
def encode(paths: Iterable[Path]) -> Object:
    """FieldsV1: nested `f:`/`k:`/`v:` keys, `.` where a list item is itself owned."""
    tree: Object = {}
    for path in sorted(paths):
        node = tree
        for kind, text in path:
            node = node.setdefault(f"{kind}:{text}", {})
        node.setdefault(".", {})
    return _finish(tree)


def _finish(tree: Object) -> Object:
    out = {}
    for key, child in tree.items():
        if key == ".":
            continue
        inner = _finish(child)
        if inner and "." in child:
            inner = {".": {}, **inner}
        out[key] = inner
    return out


def decode(fields: Object, prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    for key, child in fields.items():
        if key == ".":
            found.add(prefix)
            continue
        kind, text = key.split(":", 1)
        path = (*prefix, (kind, text))
        found |= decode(child, path) if child else {path}
    return found


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    fields: set[Path]
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> Object:
        out: Object = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def entries(obj: Object) -> list[Entry]:
    return [
        Entry(
            e["manager"],
            e["operation"],
            e.get("apiVersion", ""),
            e.get("time", ""),
            decode(e.get("fieldsV1") or {}),
            e.get("subresource", ""),
        )
        for e in (obj.get("metadata") or {}).get("managedFields") or []
    ]


def _covers(owned: set[Path], path: Path) -> bool:
    """Whether `owned` holds `path` or something under it."""
    return any(p[: len(path)] == path for p in owned)


def apply(
    live: Object, config: Object, node: Node, who: Entry, *, force: bool
) -> tuple[Object, list[Entry]]:
    """The object after `who` applies `config` (not yet defaulted), and the new managers.
    Raises ConflictError when a field another manager owns would change, unless `force`."""
    managers = entries(live)
    applied = field_set(config, node)
    merged = merge(live, config, node)
    others = [m for m in managers if m.identity != who.identity]
    conflicts = [
        Conflict(other.manager, path)
        for path in sorted(applied)
        if path[-1][0] != "k" and value_at(live, path, node) != value_at(merged, path, node)
        for other in others
        if _covers(other.fields, path)
    ]
    if conflicts and not force:
        raise ConflictError(conflicts)
    for other in others:  # forced: the applier takes the fields over
        other.fields = {
            p for p in other.fields if not any(p[: len(c.path)] == c.path for c in conflicts)
        }
    previous = next((m.fields for m in managers if m.identity == who.identity), set())
    still_owned = set().union(*(o.fields for o in others))
    for path in sorted(previous - applied, key=len, reverse=True):
        if not _covers(still_owned, path) and not _covers(applied, path):
            remove(merged, path, node)
    who.fields = applied
    return merged, _replace(others, who, managers)


def update(live: Object, new: Object, node: Node, who: Entry) -> list[Entry]:
    """The managers after `who` writes `new` over `live` (PUT, non-apply PATCH, a
    controller's write): `who` takes every field it changed, from everyone; fields it
    removed are nobody's."""
    managers = entries(live)
    before, after = field_set(live, node), field_set(new, node)
    changed = {
        p
        for p in after
        if (
            p not in before
            if p[-1][0] == "k"
            else value_at(live, p, node) != value_at(new, p, node)
        )
    }
    gone = before - after
    for manager in managers:
        manager.fields -= changed | gone
    mine = next((m for m in managers if m.identity == who.identity), None)
    who.fields = ((mine.fields if mine else set()) | changed) - gone
    return _replace(managers, who, managers)


def _replace(kept: list[Entry], who: Entry, order: list[Entry]) -> list[Entry]:
    """`kept` plus `who`, in the order they were, empty sets dropped (as the server does)."""
    result = [m for m in kept if m.identity != who.identity]
    position = next((i for i, m in enumerate(order) if m.identity == who.identity), len(order))
    result.insert(min(position, len(result)), who)
    return [m for m in result if m.fields]
