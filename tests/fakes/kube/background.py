"""The test API server's long-running parts, mixed into `FakeKubeApi`: watch streams
(events after a version, BOOKMARKs, 410 Expired), followed pod logs (`follow=true`), the
garbage collector for ownerReferences and finished deletions, and delivery of `on_change`
notices."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.kube.http import RESOURCES, field_matches, matches, send_chunk, status

Object = dict[str, Any]


class Background:
    """Needs the attributes `FakeKubeApi.__init__` sets (`_cond`, `_events`, `_objects`, ...)."""

    _cond: Any
    _events: list[tuple[int, str, str, Object]]
    _objects: dict[tuple[str, str, str], Object]
    _logs: dict[tuple[str, str, str, bool], str]
    _notices: Any
    _listeners: list[Any]
    _rv: int
    _expired_below: int
    _epoch: int
    _stopping: bool
    _gc_interval_s: float
    bookmark_interval_s: float

    def _commit(
        self, key: tuple[str, str, str], obj: Object, event_type: str, silent: bool = False
    ) -> Object:
        raise NotImplementedError

    def _watch(
        self, handler: BaseHTTPRequestHandler, plural: str, ns: str, query: dict[str, str]
    ) -> None:
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 60)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for event_ in self._stream(plural, ns, query, deadline):
                send_chunk(handler, json.dumps(event_).encode() + b"\n")
            send_chunk(handler, b"")
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _stream(
        self, plural: str, ns: str, query: dict[str, str], deadline: float
    ) -> Iterator[Object]:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        version = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") == "true"
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
                    if p == plural and n == ns and matches(labels, o) and field_matches(fields, o)
                ]
            )
        yield from initial
        last_sent = time.monotonic()
        while True:
            with self._cond:
                if self._stopping or self._epoch != epoch or time.monotonic() >= deadline:
                    return
                pending = [e for e in self._events if e[0] > cursor]
                bookmark_due = (
                    bookmarks and time.monotonic() - last_sent >= self.bookmark_interval_s
                )
                if not pending and not bookmark_due:
                    self._cond.wait(
                        timeout=min(
                            0.5, self.bookmark_interval_s, max(0.0, deadline - time.monotonic())
                        )
                    )
                    continue
                if pending:
                    cursor = pending[-1][0]
            for _, p, event_type, obj in pending:
                if (
                    p == plural
                    and obj["metadata"]["namespace"] == ns
                    and matches(labels, obj)
                    and field_matches(fields, obj)
                ):
                    last_sent = time.monotonic()
                    yield {"type": event_type, "object": obj}
            if bookmark_due and not pending:
                # "API Concepts", watch bookmarks: every event up to this version was sent.
                api_version, kind = RESOURCES[plural]
                metadata = {"resourceVersion": str(cursor)}
                last_sent = time.monotonic()
                yield {
                    "type": "BOOKMARK",
                    "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata},
                }

    def _follow_log(
        self, handler: BaseHTTPRequestHandler, ns: str, pod: str, query: dict[str, str]
    ) -> None:
        """`GET .../pods/NAME/log?follow=true`: the tail, then what `set_log` adds (a text
        that does not begin with what was sent is a new container: sent whole), until the
        pod is deleted or the client leaves. The caller checked that the pod exists."""
        key = (ns, pod, query.get("container", ""), False)
        with self._cond:
            sent = self._logs.get(key, "")
        lines = sent.splitlines(keepends=True)
        tail = int(query.get("tailLines") or len(lines) or 1)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            send_chunk(handler, "".join(lines[-tail:]).encode())
            while True:
                with self._cond:
                    text = self._logs.get(key, "")
                    if text == sent:
                        if self._stopping or ("pods", ns, pod) not in self._objects:
                            break
                        self._cond.wait(timeout=0.1)
                        continue
                new = text[len(sent) :] if text.startswith(sent) else text
                sent = text
                send_chunk(handler, new.encode())
            send_chunk(handler, b"")
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _deliver_notices(self) -> None:
        while (notice := self._notices.get()) is not None:
            with self._cond:
                listeners = list(self._listeners)
            for listener in listeners:
                listener(*notice)

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
