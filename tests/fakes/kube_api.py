"""A small Kubernetes API server for tests: the REST shapes our client layer uses, for real.

Used by `tests/integration/kubernetes/`, where the real `kubernetes_asyncio` client (through
`llm_launch.backends.kubernetes.client.KubeClient`) talks to it over loopback HTTP via the
kubeconfig that `write_kubeconfig` writes. Plain `http.server` in a thread: no aiohttp on
this side, so the client's transport is not tested against itself.

Namespaced `leaderworkersets` (leaderworkerset.x-k8s.io/v1), `deployments` (apps/v1),
`services` (v1), `horizontalpodautoscalers` (autoscaling/v2), `secrets` (v1) and `pods`
(v1, with `/log`):
GET, LIST (label selectors), POST (409 AlreadyExists), PATCH (server-side apply, merge
patch), PUT (409 on a stale resourceVersion), DELETE (404 NotFound; finalizers, foreground
propagation and a small garbage collector for ownerReferences), and `?watch=true` streams
of JSON lines with resourceVersions, with an ERROR event carrying 410 Expired for versions
older than the (test-controlled) history. Errors are real `Status` bodies.

Test hooks act as the controllers and kubelet would: `put` (create or replace, e.g. pods
built with `pod()`), `set_status`, `remove`, `set_log`, `fail_next` (answer the next
matching request with an error, e.g. 422 Invalid with causes), `hold`/`release` (a
finalizer that keeps a deleted object around), `expire_watches` (forget history and end
every stream), `uninstalled` (kinds answered 404, like a CRD that is not installed),
`requests` (what the client sent). Builders at the end (`pod`, `lws_pod`, `running`,
`waiting`, `unschedulable`) make objects as the kubelet and controllers would write them.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Object = dict[str, Any]
RESOURCES = {  # plural -> (apiVersion, kind)
    "leaderworkersets": ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    "deployments": ("apps/v1", "Deployment"),
    "services": ("v1", "Service"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "pods": ("v1", "Pod"),
    "secrets": ("v1", "Secret"),
    "events": ("v1", "Event"),  # core/v1 Events, which status reasons quote
}
TOKEN = "fake-token"
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<gv>[^/]+/[^/]+))/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$"
)


@dataclass
class _Failure:
    method: str
    plural: str
    status: Object
    times: int


@dataclass
class Request:
    method: str
    plural: str
    query: dict[str, str]
    content_type: str
    authorization: str
    body: Any = field(default=None)


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


class FakeKubeApi:
    def __init__(self, gc_interval_s: float = 0.05) -> None:
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._objects: dict[tuple[str, str, str], Object] = {}  # (plural, ns, name)
        self._events: list[tuple[int, str, str, Object]] = []  # rv, plural, type, object
        self._applied: dict[tuple[str, str, str], Object] = {}  # last SSA config per object
        self._logs: dict[tuple[str, str, str, bool], str] = {}
        self._failures: list[_Failure] = []
        self._rv = 1000
        self._expired_below = 0
        self._epoch = 0
        self._stopping = False
        self._gc_interval_s = gc_interval_s
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self  # type: ignore[attr-defined]
        self._threads: list[threading.Thread] = []
        self.uninstalled: set[str] = set()  # plurals answered 404, like a missing CRD

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeApi:
        for target in (self._serve, self._collect_garbage_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.02)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- test hooks --------------------------------------------------------------------------
    def get(self, plural: str, name: str, namespace: str = "default") -> Object | None:
        with self._cond:
            found = self._objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def names(self, plural: str, namespace: str = "default") -> list[str]:
        with self._cond:
            return sorted(n for (p, ns, n) in self._objects if p == plural and ns == namespace)

    def put(self, plural: str, obj: Object, *, silent: bool = False) -> Object:
        """Create or replace `obj` as a controller would (silent: no watch event, as if it
        happened while history was lost)."""
        with self._cond:
            metadata = obj.setdefault("metadata", {})
            metadata.setdefault("namespace", "default")
            key = (plural, metadata["namespace"], metadata["name"])
            current = self._objects.get(key)
            _stamp(obj, current)
            return copy.deepcopy(self._commit(key, obj, "MODIFIED" if current else "ADDED", silent))

    def set_status(
        self, plural: str, name: str, new_status: Object, namespace: str = "default"
    ) -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(plural, namespace, name)])
            obj["status"] = new_status
            self._commit((plural, namespace, name), obj, "MODIFIED")

    def remove(
        self, plural: str, name: str, namespace: str = "default", *, silent: bool = False
    ) -> None:
        with self._cond:
            key = (plural, namespace, name)
            self._commit(key, self._objects[key], "DELETED", silent)

    def set_log(self, pod: str, container: str, text: str, previous: bool = False) -> None:
        with self._cond:
            self._logs[("default", pod, container, previous)] = text

    def fail_next(
        self,
        method: str,
        plural: str,
        code: int,
        reason: str,
        message: str,
        causes: list[Object] | None = None,
        times: int = 1,
    ) -> None:
        details = {"causes": causes} if causes else None
        with self._cond:
            self._failures.append(
                _Failure(method, plural, status(code, reason, message, details), times)
            )

    def clear_failures(self) -> None:
        with self._cond:
            self._failures.clear()

    def hold(self, plural: str, name: str, namespace: str = "default") -> None:
        """Add a finalizer so a deleted object stays (with a deletionTimestamp) until released."""
        with self._cond:
            obj = copy.deepcopy(self._objects[(plural, namespace, name)])
            obj["metadata"].setdefault("finalizers", []).append("test.llm-launch.io/hold")
            self._commit((plural, namespace, name), obj, "MODIFIED")

    def release(self, plural: str, name: str, namespace: str = "default") -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(plural, namespace, name)])
            obj["metadata"]["finalizers"].remove("test.llm-launch.io/hold")
            self._commit((plural, namespace, name), obj, "MODIFIED")

    def end_watches(self) -> None:
        """End every open watch stream, as an API server does at its timeout."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def expire_watches(self) -> None:
        """Forget the event history (every resume gets 410 Expired) and end every stream."""
        with self._cond:
            self._expired_below = self._rv  # only the current version can be watched from
            self._epoch += 1
            self._cond.notify_all()

    def writes(self, plural: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method not in ("GET",) and (plural is None or r.plural == plural)
        ]

    # -- the API -------------------------------------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        match = _PATH.match(url.path)
        plural = match["plural"] if match else ""
        request = Request(
            method,
            plural,
            query,
            handler.headers.get("Content-Type", ""),
            handler.headers.get("Authorization", ""),
        )
        self.requests.append(request)
        try:
            if (
                not match
                or plural not in RESOURCES
                or plural in self.uninstalled
                or (match["core"] or match["gv"]) != RESOURCES[plural][0]
            ):
                raise HttpError(
                    status(404, "NotFound", "the server could not find the requested resource")
                )
            self._raise_injected(method, plural)
            request.body = _decode(raw, request.content_type)
            if method == "GET" and query.get("watch") in ("true", "1"):
                return self._watch(handler, plural, match["ns"], query)
            if match["sub"] == "log":
                return _send_text(handler, self._log(match["ns"], match["name"], query))
            code, body = self._dispatch(method, plural, match["ns"], match["name"], request)
        except HttpError as exc:
            code, body = exc.body["code"], exc.body
        _send_json(handler, code, body)

    def _dispatch(
        self, method: str, plural: str, ns: str, name: str | None, request: Request
    ) -> tuple[int, Object]:
        with self._cond:
            if method == "GET" and name:
                return 200, self._existing(plural, ns, name)
            if method == "GET":
                return 200, self._list(plural, ns, request.query.get("labelSelector", ""))
            if method == "POST":
                return 201, self._create(plural, ns, request.body)
            if method == "PATCH" and name:
                return self._patch(plural, ns, name, request)
            if method == "PUT" and name:
                return 200, self._replace(plural, ns, name, request.body)
            if method == "DELETE" and name:
                return 200, self._delete(plural, ns, name, request)
        raise HttpError(status(405, "MethodNotAllowed", f"{method} is not supported here"))

    def _existing(self, plural: str, ns: str, name: str) -> Object:
        obj = self._objects.get((plural, ns, name))
        if obj is None:
            raise HttpError(_not_found(plural, name))
        return copy.deepcopy(obj)

    def _list(self, plural: str, ns: str, selector: str) -> Object:
        items = [
            copy.deepcopy(o)
            for (p, n, _), o in sorted(self._objects.items())
            if p == plural and n == ns and matches(selector, o)
        ]
        api_version, kind = RESOURCES[plural]
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _create(self, plural: str, ns: str, obj: Object) -> Object:
        name = obj["metadata"]["name"]
        if (plural, ns, name) in self._objects:
            message = f'{_qualified(plural)} "{name}" already exists'
            raise HttpError(status(409, "AlreadyExists", message, _details(plural, name)))
        obj["metadata"]["namespace"] = ns
        obj.pop("status", None)
        _stamp(obj, None)
        return copy.deepcopy(self._commit((plural, ns, name), obj, "ADDED"))

    def _patch(self, plural: str, ns: str, name: str, request: Request) -> tuple[int, Object]:
        key = (plural, ns, name)
        current = self._objects.get(key)
        if request.content_type == "application/apply-patch+yaml":
            if not request.query.get("fieldManager"):
                raise HttpError(
                    status(
                        422, "Invalid", "fieldManager: Required value: is required for apply patch"
                    )
                )
            previous = self._applied.get(key, {}) if current else {}
            self._applied[key] = copy.deepcopy(request.body)
            if current is None:
                return 201, self._create(plural, ns, request.body)
            merged = _apply_merge(current, request.body, previous)
        elif request.content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            merged = _merge_patch(self._existing(plural, ns, name), request.body)
        else:
            raise HttpError(
                status(415, "UnsupportedMediaType", f"{request.content_type} is not supported")
            )
        if merged == current:
            return 200, copy.deepcopy(current)
        return 200, copy.deepcopy(self._update(key, merged))

    def _replace(self, plural: str, ns: str, name: str, obj: Object) -> Object:
        current = self._existing(plural, ns, name)
        version = obj["metadata"].get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            message = (
                f'Operation cannot be fulfilled on {_qualified(plural)} "{name}": the object '
                "has been modified; please apply your changes to the latest version and try again"
            )
            raise HttpError(status(409, "Conflict", message, _details(plural, name)))
        obj["status"] = current.get("status", {})
        return copy.deepcopy(self._update((plural, ns, name), obj))

    def _update(self, key: tuple[str, str, str], obj: Object) -> Object:
        current = self._objects[key]
        for field_name in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if field_name in current["metadata"]:
                obj["metadata"][field_name] = current["metadata"][field_name]
        if obj.get("spec") != current.get("spec") and "generation" in obj["metadata"]:
            obj["metadata"]["generation"] += 1
        return self._commit(key, obj, "MODIFIED")

    def _delete(self, plural: str, ns: str, name: str, request: Request) -> Object:
        obj = copy.deepcopy(self._existing(plural, ns, name))
        options = request.body if isinstance(request.body, dict) else {}
        policy = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        metadata = obj["metadata"]
        if policy == "Foreground" and "foregroundDeletion" not in metadata.get("finalizers", []):
            metadata.setdefault("finalizers", []).append("foregroundDeletion")
        if metadata.get("finalizers"):
            metadata.setdefault("deletionTimestamp", _now())
            return copy.deepcopy(self._commit((plural, ns, name), obj, "MODIFIED"))
        self._commit((plural, ns, name), obj, "DELETED")
        return status(200, "", "") | {"status": "Success", "details": _details(plural, name)}

    def _log(self, ns: str, pod: str, query: dict[str, str]) -> str:
        with self._cond:
            self._existing("pods", ns, pod)
            text = self._logs.get(
                (ns, pod, query.get("container", ""), query.get("previous") == "true")
            )
        if text is None and query.get("previous") == "true":
            message = (
                f'previous terminated container "{query.get("container")}" in pod "{pod}" not found'
            )
            raise HttpError(status(400, "BadRequest", message))
        lines = (text or "").splitlines(keepends=True)
        tail = int(query.get("tailLines") or len(lines) or 1)
        return "".join(lines[-tail:])

    def _watch(
        self, handler: BaseHTTPRequestHandler, plural: str, ns: str, query: dict[str, str]
    ) -> None:
        selector = query.get("labelSelector", "")
        version = query.get("resourceVersion", "")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 60)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for event in self._stream(plural, ns, selector, version, deadline):
                _send_chunk(handler, json.dumps(event).encode() + b"\n")
            _send_chunk(handler, b"")
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _stream(
        self, plural: str, ns: str, selector: str, version: str, deadline: float
    ) -> Iterator[Object]:
        with self._cond:
            epoch = self._epoch
            if version not in ("", "0") and int(version) < self._expired_below:
                message = f"too old resource version: {version} ({self._expired_below})"
                yield {"type": "ERROR", "object": status(410, "Expired", message)}
                return
            cursor = self._rv if version in ("", "0") else int(version)
            initial = (
                []
                if version not in ("", "0")
                else [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for (p, n, _), o in sorted(self._objects.items())
                    if p == plural and n == ns and matches(selector, o)
                ]
            )
        yield from initial
        while True:
            with self._cond:
                if self._stopping or self._epoch != epoch or time.monotonic() >= deadline:
                    return
                pending = [e for e in self._events if e[0] > cursor]
                if not pending:
                    self._cond.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                    continue
                cursor = pending[-1][0]
            for _, p, event_type, obj in pending:
                if p == plural and obj["metadata"]["namespace"] == ns and matches(selector, obj):
                    yield {"type": event_type, "object": obj}

    # -- internals -----------------------------------------------------------------------------
    def _raise_injected(self, method: str, plural: str) -> None:
        with self._cond:
            for failure in self._failures:
                if failure.method == method and failure.plural == plural and failure.times > 0:
                    failure.times -= 1
                    raise HttpError(copy.deepcopy(failure.status))

    def _commit(
        self, key: tuple[str, str, str], obj: Object, event_type: str, silent: bool = False
    ) -> Object:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if event_type == "DELETED":
            self._objects.pop(key, None)
            self._applied.pop(key, None)
        else:
            self._objects[key] = obj
        if not silent:
            self._events.append((self._rv, key[0], event_type, copy.deepcopy(obj)))
        self._cond.notify_all()
        return obj

    def _collect_garbage_forever(self) -> None:
        while not self._stopping:
            time.sleep(self._gc_interval_s)
            with self._cond:
                self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Delete dependents of deleted owners; finish foreground and finalized deletions."""
        live = self._objects.values()
        uids = {o["metadata"]["uid"] for o in live}
        deleting = {o["metadata"]["uid"] for o in live if o["metadata"].get("deletionTimestamp")}
        for key, obj in list(self._objects.items()):
            metadata = obj["metadata"]
            owners = {r["uid"] for r in metadata.get("ownerReferences", [])}
            if metadata.get("finalizers") or not owners:
                continue
            if not owners & uids or owners & deleting:
                self._commit(key, obj, "DELETED")
        for key, obj in list(self._objects.items()):
            metadata = obj["metadata"]
            if not metadata.get("deletionTimestamp"):
                continue
            dependents = [
                o
                for o in self._objects.values()
                if metadata["uid"] in [r["uid"] for r in o["metadata"].get("ownerReferences", [])]
            ]
            finalizers = [
                f for f in metadata.get("finalizers", []) if f != "foregroundDeletion" or dependents
            ]
            if finalizers != metadata.get("finalizers", []) or not finalizers:
                updated = copy.deepcopy(obj)
                updated["metadata"]["finalizers"] = finalizers
                self._commit(key, updated, "MODIFIED" if finalizers else "DELETED")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
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


# -- label selectors, merging -------------------------------------------------------------------
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


def _apply_merge(current: Any, applied: Any, previous: Any) -> Any:
    """Server-side apply, roughly: set what the manager applies, drop what it applied
    before and no longer does, keep every other field (owned by someone else)."""
    if not isinstance(current, dict) or not isinstance(applied, dict):
        return copy.deepcopy(applied)
    previous = previous if isinstance(previous, dict) else {}
    result = copy.deepcopy(current)
    for key in previous:
        if key not in applied and key != "status":
            result.pop(key, None)
    for key, value in applied.items():
        if key != "status":
            result[key] = _apply_merge(current.get(key), value, previous.get(key))
    return result


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _stamp(obj: Object, current: Object | None) -> None:
    metadata = obj["metadata"]
    old = (current or {}).get("metadata", {})
    metadata["uid"] = old.get("uid") or metadata.get("uid") or str(uuid.uuid4())
    metadata["creationTimestamp"] = (
        old.get("creationTimestamp") or metadata.get("creationTimestamp") or _now()
    )
    metadata.setdefault("generation", old.get("generation", 1))


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    return yaml.safe_load(raw) if "yaml" in content_type else json.loads(raw)


def _send_json(handler: BaseHTTPRequestHandler, code: int, body: Object) -> None:
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _send_text(handler: BaseHTTPRequestHandler, text: str) -> None:
    data = text.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _send_chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _qualified(plural: str) -> str:
    api_version = RESOURCES[plural][0]
    return f"{plural}.{api_version.split('/')[0]}" if "/" in api_version else plural


def _details(plural: str, name: str) -> Object:
    api_version = RESOURCES[plural][0]
    group = api_version.split("/")[0] if "/" in api_version else ""
    return {"name": name, "group": group, "kind": plural}


def _not_found(plural: str, name: str) -> Object:
    return status(
        404, "NotFound", f'{_qualified(plural)} "{name}" not found', _details(plural, name)
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- objects as the cluster's controllers and kubelet write them (for hooks and unit tests) ---
def pod(
    name: str,
    labels: dict[str, str],
    *,
    statuses: list[Object] | None = None,
    ready: bool = False,
    phase: str = "Running",
    scheduled: Object | None = None,
    requests: dict[str, str] | None = None,
    owner_uid: str | None = None,
    uid: str | None = None,
) -> Object:
    """A pod with an `engine` container (and the given container statuses)."""
    statuses = statuses if statuses is not None else [running("engine", ready=ready)]
    conditions = [scheduled or {"type": "PodScheduled", "status": "True"}]
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    metadata: Object = {"name": name, "namespace": "default", "labels": dict(labels)}
    metadata["uid"] = uid or str(uuid.uuid4())
    if owner_uid:
        metadata["ownerReferences"] = [{"kind": "StatefulSet", "name": name, "uid": owner_uid}]
    containers = [
        {"name": s["name"], "image": s.get("image", "ghcr.io/llm-launch/sglang:v1")}
        for s in statuses
    ] or [{"name": "engine", "image": "ghcr.io/llm-launch/sglang:v1"}]
    containers[0]["resources"] = {"requests": dict(requests or {}), "limits": dict(requests or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers},
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses},
    }


def lws_pod(
    lws: str, group: int, rank: int, endpoint_id: str, *, revision: str = "rev-1", **kwargs: Any
) -> Object:
    """A LeaderWorkerSet pod: leader `<lws>-<group>`, workers `<lws>-<group>-<rank>`."""
    labels = {
        "app.kubernetes.io/managed-by": "llm-launch",
        "llm-launch.io/endpoint-id": endpoint_id,
        "leaderworkerset.sigs.k8s.io/name": lws,
        "leaderworkerset.sigs.k8s.io/group-index": str(group),
        "leaderworkerset.sigs.k8s.io/worker-index": str(rank),
        "leaderworkerset.sigs.k8s.io/template-revision-hash": revision,
    }
    return pod(f"{lws}-{group}" + (f"-{rank}" if rank else ""), labels, **kwargs)


def running(
    name: str = "engine",
    *,
    ready: bool = True,
    restarts: int = 0,
    exit_code: int | None = None,
    exit_reason: str = "Error",
) -> Object:
    """A running container; `exit_code` (and `exit_reason`) describe its previous run."""
    status: Object = {"name": name, "ready": ready, "restartCount": restarts}
    status["state"] = {"running": {"startedAt": _now()}}
    if exit_code is not None:
        status["lastState"] = {"terminated": _terminated(exit_code, exit_reason)}
    return status


def waiting(
    name: str,
    reason: str,
    message: str = "",
    *,
    restarts: int = 0,
    image: str | None = None,
    exit_code: int | None = None,
    exit_reason: str = "Error",
) -> Object:
    """A container waiting (ImagePullBackOff, CrashLoopBackOff, ...), maybe after a run that
    ended with `exit_code`."""
    status: Object = {"name": name, "ready": False, "restartCount": restarts}
    status["state"] = {"waiting": {"reason": reason, "message": message}}
    if image:
        status["image"] = image
    if exit_code is not None:
        status["lastState"] = {"terminated": _terminated(exit_code, exit_reason)}
    return status


def unschedulable(message: str) -> Object:
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
    }


def _terminated(exit_code: int, reason: str = "Error") -> Object:
    return {"exitCode": exit_code, "reason": reason, "finishedAt": _now()}
