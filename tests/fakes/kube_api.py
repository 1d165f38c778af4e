"""A small Kubernetes API server for tests: the REST shapes our client layer uses, for real.

Used by `tests/integration/kubernetes/`, where the real `kubernetes_asyncio` client (through
`llm_launch.backends.kubernetes.client.KubeClient`) talks to it over loopback HTTP via the
kubeconfig that `write_kubeconfig` writes. Plain `http.server` in a thread: no aiohttp on
this side, so the client's transport is not tested against itself.

## What the test API server imitates (and after which document)

Namespaced `leaderworkersets` (leaderworkerset.x-k8s.io/v1, with `/scale`), `deployments`
(apps/v1, with `/scale`), `services`, `secrets`, `pods` (with `/log`) and `events` (v1),
`horizontalpodautoscalers` (autoscaling/v2), `networkpolicies` (networking.k8s.io/v1).
- Server-side apply, field management and `managedFields` (FieldsV1, per manager,
  operation Apply|Update), removal of fields an applier stops sending, merge by list keys,
  conflicts (409, `FieldManagerConflict` causes) unless `force=true`: Kubernetes docs
  "Server-Side Apply" and sigs.k8s.io/structured-merge-diff; see `kube/ssa.py`.
- Non-apply writes (POST, PUT, merge PATCH, the `put` and `scale` hooks) recorded as
  operation Update of their manager (`fieldManager`, else the User-Agent's first part, as
  the API server defaults it); the `/scale` subresource as subresource `scale`, the way the
  HPA controller writes `spec.replicas`.
- `fieldValidation` Strict (400 BadRequest on unknown or duplicate fields) / Warn (the
  default: `Warning` headers) / Ignore, unknown fields pruned (CRD structural pruning):
  API reference, "fieldValidation"; CRD docs, "Field pruning"; see `kube/writes.py`.
- Defaults: the LWS CRD's `default`s, and the documented Go defaults of the built-in
  fields llm-launch writes, each with its source in `kube/schemas.py`; a Service's cluster
  IP allocated and kept.
- `resourceVersion`: every write a new one; a stale one in a PUT or PATCH body is 409
  "the object has been modified"; a write that changes nothing stores nothing ("API
  Concepts", resource versions and efficient detection of changes).
- Watches (JSON lines): from a version, the events after it; `allowWatchBookmarks=true`
  gets BOOKMARK events (the object's kind and apiVersion, only `metadata.resourceVersion`)
  every `bookmark_interval_s`; a version older than the kept history gets an ERROR event
  with a 410 Expired `Status` ("too old resource version") ("API Concepts", "Watch
  bookmarks", "410 Gone responses").
- LIST with `labelSelector`, and `fieldSelector` (events: involvedObject.name/kind,
  reason, type, source); DELETE with finalizers, foreground propagation and a small
  garbage collector for ownerReferences ("Garbage Collection" docs).
- Errors are real `Status` bodies (k8s.io/apimachinery pkg/api/errors).
Not imitated: authentication beyond a bearer token check in the kubeconfig, admission,
type/format/CEL validation, status ownership, strategic merge patch (answered as a merge
patch), list pagination, `sendInitialEvents`.

## Test hooks
They act as the controllers and kubelet would, thread-safe: `put` (create or replace as a
controller, manager `kube-controller-manager` unless given, e.g. pods built with `pod()`),
`scale` (the HPA controller's write through `/scale`), `set_status`, `remove`, `objects`
(every object of a plural), `on_change` (a callback for every stored change), `record_event`
(a core/v1 Event as the event recorder writes it, aggregated by count), `set_log` (a
followed log, `follow=true`, streams what a longer text adds),
`fail_next` (answer the next matching request with an error, e.g. 422 Invalid with causes),
`hold`/`release` (a finalizer that keeps a deleted object around), `end_watches`,
`expire_watches` (forget history and end every stream), `uninstalled` (kinds answered 404,
like a CRD that is not installed), `requests` (what the client sent), `accesses`
(the group, resource, verb and name RBAC would be asked about, `kube/access.py`), `crds`
(the cluster-scoped CustomResourceDefinitions served, `kube/crds.py`). Builders (`pod`,
`lws_pod`, `running`, `waiting`, `unschedulable`, `event`) are in `kube/builders.py`.
"""

from __future__ import annotations

import copy
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.kube import crds, writes
from tests.fakes.kube.access import Access, verb_of
from tests.fakes.kube.background import Background
from tests.fakes.kube.builders import event, lws_pod, now, pod, running, unschedulable, waiting
from tests.fakes.kube.http import (
    RESOURCES,
    Handler,
    HttpError,
    Request,
    Server,
    decode,
    details,
    field_matches,
    matches,
    merge_patch,
    not_found,
    qualified,
    send_json,
    send_text,
    status,
)
from tests.fakes.kube.scale import ScaleRequests

__all__ = [
    "RESOURCES",
    "TOKEN",
    "FakeKubeApi",
    "HttpError",
    "Request",
    "event",
    "lws_pod",
    "matches",
    "pod",
    "running",
    "status",
    "unschedulable",
    "waiting",
]

Object = dict[str, Any]
Listener = Callable[[str, str, Object], None]  # (event type, plural, object)
TOKEN = "fake-token"
CONTROLLER = "kube-controller-manager"
_SCALED = ("deployments", "leaderworkersets")
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<gv>[^/]+/[^/]+))/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|scale))?$"
)


@dataclass
class _Failure:
    method: str
    plural: str
    status: Object
    times: int


class FakeKubeApi(Background, ScaleRequests):
    def __init__(self, gc_interval_s: float = 0.05, bookmark_interval_s: float = 1.0) -> None:
        self.requests: list[Request] = []
        self.bookmark_interval_s = bookmark_interval_s
        self._cond = threading.Condition()  # an RLock underneath: hooks may nest
        self._objects: dict[tuple[str, str, str], Object] = {}  # (plural, ns, name)
        self._events: list[tuple[int, str, str, Object]] = []  # rv, plural, type, object
        self._logs: dict[tuple[str, str, str, bool], str] = {}
        self._failures: list[_Failure] = []
        self._listeners: list[Listener] = []
        self._notices: queue.SimpleQueue[tuple[str, str, Object] | None] = queue.SimpleQueue()
        self._rv = 1000
        self._expired_below = 0
        self._epoch = 0
        self._stopping = False
        self._gc_interval_s = gc_interval_s
        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.api = self  # type: ignore[attr-defined]
        self._threads: list[threading.Thread] = []
        self.uninstalled: set[str] = set()  # plurals answered 404, like a missing CRD
        self.crds = crds.Crds()  # cluster-scoped CustomResourceDefinitions (kube/crds.py)
        self.accesses: list[Access] = []  # what RBAC would authorize (kube/access.py)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeApi:
        for target in (self._serve, self._collect_garbage_forever, self._deliver_notices):
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
        self._notices.put(None)
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

    def objects(self, plural: str, namespace: str | None = "default") -> list[Object]:
        """Copies of every object of `plural` (in `namespace`, or all when None), by name."""
        with self._cond:
            return [
                copy.deepcopy(o)
                for (p, ns, _), o in sorted(self._objects.items())
                if p == plural and namespace in (None, ns)
            ]

    def on_change(self, listener: Listener) -> None:
        """Call `listener(event type, plural, object)` for every stored change, in order, from
        one thread of the fake's own (never under its lock, so it may call the hooks)."""
        with self._cond:
            self._listeners.append(listener)

    def put(
        self, plural: str, obj: Object, *, silent: bool = False, manager: str = CONTROLLER
    ) -> Object:
        """Create or replace `obj` as a controller would, status included (silent: no watch
        event, as if it happened while history was lost)."""
        with self._cond:
            metadata = obj.setdefault("metadata", {})
            namespace = metadata.setdefault("namespace", "default")
            key = (plural, namespace, metadata["name"])
            live = self._objects.get(key)
            write = writes.Write(plural, namespace, metadata["name"], manager)
            stored = writes.replace(write, live or {}, obj, keep_status=False)
            if writes.unchanged(live, stored):
                return copy.deepcopy(live)
            return copy.deepcopy(self._commit(key, stored, "MODIFIED" if live else "ADDED", silent))

    def scale(
        self,
        plural: str,
        name: str,
        replicas: int,
        namespace: str = "default",
        manager: str = CONTROLLER,
    ) -> Object:
        """Set `spec.replicas` through the scale subresource, as the HPA controller does
        (its manager owns the field afterwards, operation Update, subresource scale)."""
        with self._cond:
            return self._scale(plural, namespace, name, replicas, manager)

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

    def record_event(
        self,
        involved: Object,
        reason: str,
        message: str,
        *,
        type: str = "Warning",
        component: str = "default-scheduler",
    ) -> Object:
        """A core/v1 Event about `involved`; the same reason and message again raise its
        `count` and `lastTimestamp`, as client-go's EventCorrelator aggregates them."""
        with self._cond:
            uid = involved.get("metadata", {}).get("uid")
            for found in self.objects("events", involved["metadata"].get("namespace", "default")):
                same = found["involvedObject"].get("uid") == uid
                if same and (found["reason"], found["message"]) == (reason, message):
                    found["count"] = found.get("count", 1) + 1
                    found["lastTimestamp"] = now()
                    return self.put("events", found, manager=component)
            return self.put(
                "events", event(involved, reason, message, type=type, component=component)
            )

    def set_log(self, pod: str, container: str, text: str, previous: bool = False) -> None:
        """A container's log; a longer text beginning with the last is what it wrote since
        (a follow gets the rest)."""
        with self._cond:
            self._logs[("default", pod, container, previous)] = text
            self._cond.notify_all()

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
        request.user_agent = handler.headers.get("User-Agent", "")
        self.requests.append(request)
        if url.path.startswith(crds.PREFIX):
            return self._crd(handler, method, url.path)
        if match:
            group = match["gv"].split("/")[0] if match["gv"] else ""
            resource = plural + (f"/{match['sub']}" if match["sub"] else "")
            verb = verb_of(method, bool(match["name"]), query.get("watch") in ("true", "1"))
            self.accesses.append(Access(group, resource, verb, match["name"] or ""))
        try:
            if (
                not match
                or plural not in RESOURCES
                or plural in self.uninstalled
                or (match["core"] or match["gv"]) != RESOURCES[plural][0]
                or (match["sub"] == "scale" and plural not in _SCALED)
            ):
                raise HttpError(
                    status(404, "NotFound", "the server could not find the requested resource")
                )
            self._raise_injected(method, plural)
            try:
                request.body, request.duplicates = decode(raw, request.content_type)
            except ValueError as exc:  # yaml.YAMLError is one
                raise HttpError(
                    status(400, "BadRequest", f"the body cannot be decoded: {exc}")
                ) from None
            if method == "GET" and query.get("watch") in ("true", "1"):
                return self._watch(handler, plural, match["ns"], query)
            if match["sub"] == "log" and query.get("follow") == "true":
                with self._cond:
                    self._existing("pods", match["ns"], match["name"])
                return self._follow_log(handler, match["ns"], match["name"], query)
            if match["sub"] == "log":
                return send_text(handler, self._log(match["ns"], match["name"], query))
            code, body = self._dispatch(method, match["ns"], match["name"], match["sub"], request)
        except HttpError as exc:
            code, body = exc.body["code"], exc.body
        send_json(handler, code, body, request.warnings)

    def _dispatch(
        self, method: str, ns: str, name: str | None, sub: str | None, request: Request
    ) -> tuple[int, Object]:
        plural = request.plural
        with self._cond:
            if sub == "scale" and name:
                return 200, self._scale_request(method, ns, name, request)
            if method == "GET" and name:
                return 200, self._existing(plural, ns, name)
            if method == "GET":
                return 200, self._list(plural, ns, request.query)
            if method == "POST":
                return 201, self._create(ns, request)
            if method == "PATCH" and name:
                return self._patch(ns, name, request)
            if method == "PUT" and name:
                live = self._existing(plural, ns, name)
                new = writes.replace(self._write(ns, name, request), live, request.body)
                return 200, self._store(plural, live, new)
            if method == "DELETE" and name:
                return 200, self._delete(plural, ns, name, request)
        raise HttpError(status(405, "MethodNotAllowed", f"{method} is not supported here"))

    def _write(self, ns: str, name: str, request: Request, *, sub: str = "") -> writes.Write:
        body_name = (
            ((request.body or {}).get("metadata") or {}).get("name")
            if isinstance(request.body, dict)
            else None
        )
        manager = request.query.get("fieldManager") or request.user_agent.split("/")[0]
        return writes.Write(
            request.plural,
            ns,
            name or str(body_name),
            manager or "unknown",
            validation=request.query.get("fieldValidation", "Warn"),
            duplicates=request.duplicates,
            warnings=request.warnings,
            subresource=sub,
        )

    def _store(self, plural: str, live: Object | None, new: Object) -> Object:
        """Commit `new` unless it changes nothing (then the stored object is the answer)."""
        if live is not None and writes.unchanged(live, new):
            return copy.deepcopy(live)
        key = (plural, new["metadata"]["namespace"], new["metadata"]["name"])
        return copy.deepcopy(self._commit(key, new, "MODIFIED" if live else "ADDED"))

    def _existing(self, plural: str, ns: str, name: str) -> Object:
        obj = self._objects.get((plural, ns, name))
        if obj is None:
            raise HttpError(not_found(plural, name))
        return copy.deepcopy(obj)

    def _list(self, plural: str, ns: str, query: dict[str, str]) -> Object:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        items = [
            copy.deepcopy(o)
            for (p, n, _), o in sorted(self._objects.items())
            if p == plural and n == ns and matches(labels, o) and field_matches(fields, o)
        ]
        api_version, kind = RESOURCES[plural]
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _create(self, ns: str, request: Request) -> Object:
        write = self._write(ns, "", request)
        if (request.plural, ns, write.name) in self._objects:
            message = f'{qualified(request.plural)} "{write.name}" already exists'
            raise HttpError(
                status(409, "AlreadyExists", message, details(request.plural, write.name))
            )
        return self._store(request.plural, None, writes.create(write, request.body))

    def _patch(self, ns: str, name: str, request: Request) -> tuple[int, Object]:
        plural = request.plural
        live = copy.deepcopy(self._objects.get((plural, ns, name)))
        write = self._write(ns, name, request)
        if request.content_type == "application/apply-patch+yaml":
            if not request.query.get("fieldManager"):
                message = "fieldManager: Required value: is required for apply patch"
                raise HttpError(status(422, "Invalid", message))
            force = request.query.get("force") == "true"
            stored = self._store(plural, live, writes.apply(write, live, request.body, force=force))
            if live is None:  # the patch handler also authorizes `create` (kube/access.py)
                group = RESOURCES[plural][0].rpartition("/")[0]
                self.accesses.append(Access(group, plural, "create", name))
            return (201 if live is None else 200), stored
        if request.content_type not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            message = f"{request.content_type} is not supported"
            raise HttpError(status(415, "UnsupportedMediaType", message))
        if live is None:
            raise HttpError(not_found(plural, name))
        new = writes.replace(write, live, merge_patch(live, request.body))
        return 200, self._store(plural, live, new)

    def _delete(self, plural: str, ns: str, name: str, request: Request) -> Object:
        obj = copy.deepcopy(self._existing(plural, ns, name))
        options = request.body if isinstance(request.body, dict) else {}
        policy = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        metadata = obj["metadata"]
        if policy == "Foreground" and "foregroundDeletion" not in metadata.get("finalizers", []):
            metadata.setdefault("finalizers", []).append("foregroundDeletion")
        if metadata.get("finalizers"):
            metadata.setdefault("deletionTimestamp", now())
            return copy.deepcopy(self._commit((plural, ns, name), obj, "MODIFIED"))
        self._commit((plural, ns, name), obj, "DELETED")
        return status(200, "", "") | {"status": "Success", "details": details(plural, name)}

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

    def _crd(self, handler: BaseHTTPRequestHandler, method: str, path: str) -> None:
        name = path.removeprefix(crds.PREFIX).strip("/")
        verb = verb_of(method, bool(name), False)
        self.accesses.append(Access(crds.GROUP, "customresourcedefinitions", verb, name))
        try:
            code, body = 200, self.crds.get(method, name)
        except HttpError as exc:
            code, body = exc.body["code"], exc.body
        send_json(handler, code, body)

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
        else:
            self._objects[key] = obj
        if not silent:
            self._events.append((self._rv, key[0], event_type, copy.deepcopy(obj)))
        if self._listeners:
            self._notices.put((event_type, key[0], copy.deepcopy(obj)))
        self._cond.notify_all()
        return obj
