"""HTTP plumbing of the test API server: the resources it serves, request records, `Status`
bodies (as k8s.io/apimachinery/pkg/api/errors builds them), label and field selectors,
body decoding (noting duplicate fields, for `fieldValidation`), JSON merge patch, and the
threading HTTP server."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

Object = dict[str, Any]
RESOURCES = {  # plural -> (apiVersion, kind)
    "leaderworkersets": ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    "deployments": ("apps/v1", "Deployment"),
    "services": ("v1", "Service"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "pods": ("v1", "Pod"),
    "secrets": ("v1", "Secret"),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "events": ("v1", "Event"),
    "leases": ("coordination.k8s.io/v1", "Lease"),  # leader election of the control plane
}


@dataclass
class Request:
    method: str
    plural: str
    query: dict[str, str]
    content_type: str
    authorization: str
    body: Any = field(default=None)
    duplicates: list[str] = field(default_factory=list)  # fields the body named twice
    warnings: list[str] = field(default_factory=list)  # `Warning` headers of the answer
    user_agent: str = ""


def status(code: int, reason: str, message: str, details: Object | None = None) -> Object:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class HttpError(Exception):
    def __init__(self, body: Object) -> None:
        super().__init__(body["message"])
        self.body = body


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.api.handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.api.handle(self, "POST")  # type: ignore[attr-defined]

    def do_PUT(self) -> None:
        self.server.api.handle(self, "PUT")  # type: ignore[attr-defined]

    def do_PATCH(self) -> None:
        self.server.api.handle(self, "PATCH")  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:
        self.server.api.handle(self, "DELETE")  # type: ignore[attr-defined]


def matches(selector: str, obj: Object) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for requirement in re.split(r",(?![^(]*\))", selector.strip()) if selector.strip() else []:
        requirement = requirement.strip()
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\((.*)\)", requirement):
            values = {v.strip() for v in m[3].split(",")}
            if (labels.get(m[1]) in values) != (m[2] == "in"):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", requirement):
            if (labels.get(m[1]) == m[3]) != (m[2] != "!="):
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif requirement not in labels:
            return False
    return True


def field_matches(selector: str, obj: Object) -> bool:
    """A `fieldSelector` of `path=value` / `path!=value` terms, e.g. the ones the API
    server supports for events: involvedObject.kind, involvedObject.name, reason, type,
    source (pkg/apis/core/v1/conversion.go, AddFieldLabelConversionsForEvent)."""
    for term in [t for t in selector.split(",") if t.strip()]:
        negate = "!=" in term
        path, _, expected = term.replace("!=", "=").replace("==", "=").partition("=")
        value: Any = obj
        for part in path.strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict):  # `source` compares its component
            value = value.get("component")
        if (str(value if value is not None else "") == expected.strip()) == negate:
            return False
    return True


def decode(raw: bytes, content_type: str) -> tuple[Any, list[str]]:
    """The body, and the names of fields that some object in it repeats (the last one wins,
    as in the API server's non-strict decoding)."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[Any, Any]]) -> Object:
        seen: Object = {}
        for key, value in items:
            if key in seen:
                duplicates.append(str(key))
            seen[key] = value
        return seen

    if not raw:
        return None, duplicates
    if "yaml" in content_type:
        return yaml.load(raw, Loader=_loader(pairs)), duplicates  # a SafeLoader
    return json.loads(raw, object_pairs_hook=pairs), duplicates


def _loader(pairs: Any) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
            self.flatten_mapping(node)
            return pairs(
                [
                    (self.construct_object(k, deep=True), self.construct_object(v, deep=True))
                    for k, v in node.value
                ]
            )

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, Loader.construct_mapping)
    return Loader


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def send_json(
    handler: BaseHTTPRequestHandler, code: int, body: Object, warnings: list[str] | None = None
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    for warning in warnings or []:
        # RFC 7234 warn-code 299 with agent "-", as the API server sends warnings.
        handler.send_header("Warning", f"299 - {json.dumps(warning)}")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_text(handler: BaseHTTPRequestHandler, text: str) -> None:
    data = text.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def qualified(plural: str) -> str:
    api_version = RESOURCES[plural][0]
    return f"{plural}.{api_version.split('/')[0]}" if "/" in api_version else plural


def details(plural: str, name: str) -> Object:
    api_version = RESOURCES[plural][0]
    group = api_version.split("/")[0] if "/" in api_version else ""
    return {"name": name, "group": group, "kind": plural}


def not_found(plural: str, name: str) -> Object:
    return status(404, "NotFound", f'{qualified(plural)} "{name}" not found', details(plural, name))
