"""Informers: list, then watch, one resource type, keeping an in-memory cache of it.

Created and started by `backend.KubernetesBackend` (one each for LeaderWorkerSets,
Deployments and pods carrying `app.kubernetes.io/managed-by=llm-launch`); its `observe`
and `targets` read the caches, so the reconciler's frequent passes never reach the API
server. Next hop: `client.KubeClient.list` / `.watch`.

The loop, as client-go's reflector does it: list (which gives a resourceVersion), then
watch from that version, resuming from the last version seen whenever a stream ends. A
410 Gone (the version fell out of the server's history) means list again; any other error
is logged, kept in `last_error` for status reasons, and retried with capped exponential
backoff. Listeners (the recreation tracker) see every change, including those a re-list
reveals, as ADDED/MODIFIED/DELETED events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llm_launch.backends.kubernetes.client import KubeClient, Resource
from llm_launch.backends.kubernetes.errors import ResourceExpired
from llm_launch.backends.kubernetes.render_names import LABEL_ENDPOINT_ID
from llm_launch.domain.errors import LaunchError

log = logging.getLogger("llm_launch.kubernetes.watch")

Object = dict[str, Any]
Listener = Callable[[str, Object], None]


class ObjectCache:
    """Objects of one type by name, indexed by their endpoint id label."""

    def __init__(self) -> None:
        self._by_name: dict[str, Object] = {}
        self._by_endpoint: dict[str, dict[str, Object]] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Object | None:
        return self._by_name.get(name)

    def for_endpoint(self, endpoint_id: str) -> list[Object]:
        return list(self._by_endpoint.get(endpoint_id, {}).values())

    def apply(self, event_type: str, obj: Object) -> None:
        name = str(obj["metadata"]["name"])
        self._unindex(name)
        if event_type == "DELETED":
            return
        self._by_name[name] = obj
        endpoint_id = (obj["metadata"].get("labels") or {}).get(LABEL_ENDPOINT_ID)
        if endpoint_id is not None:
            self._by_endpoint.setdefault(endpoint_id, {})[name] = obj

    def replace(self, items: Iterable[Object]) -> list[tuple[str, Object]]:
        """Make the cache hold exactly `items`; returns the changes as watch events."""
        fresh = {str(o["metadata"]["name"]): o for o in items}
        events = [("DELETED", o) for name, o in self._by_name.items() if name not in fresh]
        for name, obj in fresh.items():
            known = self._by_name.get(name)
            if known is None:
                events.append(("ADDED", obj))
            elif _version(known) != _version(obj):
                events.append(("MODIFIED", obj))
        for event_type, obj in events:
            self.apply(event_type, obj)
        return events

    def _unindex(self, name: str) -> None:
        old = self._by_name.pop(name, None)
        if old is None:
            return
        endpoint_id = (old["metadata"].get("labels") or {}).get(LABEL_ENDPOINT_ID)
        bucket = self._by_endpoint.get(endpoint_id or "")
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self._by_endpoint[endpoint_id or ""]


@dataclass(frozen=True)
class WatchTiming:
    stream_timeout_s: int = 240  # the server ends each watch after this; we resume
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class Informer:
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        namespace: str,
        selector: str,
        listeners: Iterable[Listener] = (),
        timing: WatchTiming | None = None,
        cache: ObjectCache | None = None,
    ) -> None:
        self.resource = resource
        self.cache = cache if cache is not None else ObjectCache()
        self.synced = asyncio.Event()
        self.last_error: str | None = None
        self._client = client
        self._namespace = namespace
        self._selector = selector
        self._listeners = list(listeners)
        self._timing = timing or WatchTiming()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            name = f"watch-{self.resource.plural}"
            self._task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self, timeout_s: float) -> bool:
        """Whether the first list has arrived (waiting up to `timeout_s` for it, unless
        listing has failed already: then the caller reports `last_error` at once)."""
        if not self.synced.is_set() and self.last_error is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.synced.wait(), timeout_s)
        return self.synced.is_set()

    async def _run(self) -> None:
        version = ""
        delay = self._timing.backoff_initial_s
        while True:
            try:
                if not version:
                    version = await self._relist()
                started = asyncio.get_running_loop().time()
                version, events = await self._follow(version)
                self.last_error = None  # the watch worked again: what the cache says is current
                if events or asyncio.get_running_loop().time() - started > 1.0:
                    delay = self._timing.backoff_initial_s
                else:  # an empty stream that ended at once: do not spin
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._timing.backoff_max_s)
            except ResourceExpired:
                log.info("%s: resourceVersion %s expired; listing again", self._what, version)
                version = ""
            except Exception as exc:  # the loop must outlive any one failure
                self._failed(exc, delay)
                # Start again with a list: its success proves (and says, by clearing
                # last_error) that the cache is current again, and misses nothing.
                version = ""
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._timing.backoff_max_s)

    def _failed(self, exc: Exception, delay: float) -> None:
        """Remember the error for status reasons; log it when it is new."""
        if not isinstance(exc, LaunchError):
            log.exception("%s: unexpected error", self._what)
        message = exc.message if isinstance(exc, LaunchError) else f"{type(exc).__name__}: {exc}"
        if message != self.last_error:
            log.warning("%s failed (retrying in %.1fs): %s", self._what, delay, message)
        self.last_error = message

    async def _relist(self) -> str:
        listed = await self._client.list(self.resource, self._namespace, self._selector)
        for event_type, obj in self.cache.replace(listed.items):
            self._notify(event_type, obj)
        self.last_error = None
        self.synced.set()
        return listed.resource_version

    async def _follow(self, version: str) -> tuple[str, int]:
        """Apply the events of one watch stream: the version to resume from, and how
        many events came."""
        count = 0
        stream = self._client.watch(
            self.resource,
            self._namespace,
            self._selector,
            version,
            self._timing.stream_timeout_s,
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                count += 1
                version = _version(event.object) or version
                if event.type in ("ADDED", "MODIFIED", "DELETED"):
                    self.cache.apply(event.type, event.object)
                    self._notify(event.type, event.object)
        return version, count

    def _notify(self, event_type: str, obj: Object) -> None:
        self.last_error = None  # an event arrived: the watch works
        for listener in self._listeners:
            try:
                listener(event_type, obj)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("%s: listener failed", self._what)

    @property
    def _what(self) -> str:
        return f"watch of {self.resource.kind} objects in {self._namespace}"


def _version(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
