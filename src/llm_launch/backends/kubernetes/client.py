"""KubeClient: the thin, typed wrapper around `kubernetes_asyncio` that the backend talks through.

Callers: `apply.py` (apply, delete, wait), `watch.py` (list and watch), `backend.py` (logs).
Next hop: the Kubernetes API server, over `kubernetes_asyncio.client.ApiClient`.

Every resource goes through the raw `ApiClient.call_api` with plain JSON dicts, the same for
the LeaderWorkerSet custom resource and the built-in kinds. The renderer produces dicts, the
status functions read dicts, and server-side apply takes a whole manifest, so the typed
models (which rename fields to snake_case and drop unknown ones) would only add a lossy
round trip. The library still does what it is good at: kubeconfig and in-cluster loading,
TLS, bearer tokens and their refresh. Every error answer and connection failure is turned
into our error tree (`errors.py`) here; nothing from the library escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import OpenApiException

from llm_launch.backends.kubernetes.errors import (
    KubeconfigError,
    KubernetesError,
    KubernetesUnavailable,
    from_status,
    status_body,
)

Object = dict[str, Any]
FIELD_MANAGER = "llm-launch"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Resource:
    """One namespaced resource type of the API (`api_version` as in a manifest)."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        prefix = f"/apis/{self.api_version}" if "/" in self.api_version else "/api/v1"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}"
        return path + "".join(f"/{part}" for part in (name, sub) if part)


LEADER_WORKER_SET = Resource("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets")
DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments")
SERVICE = Resource("v1", "Service", "services")
HPA = Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
POD = Resource("v1", "Pod", "pods")
SECRET = Resource("v1", "Secret", "secrets")
NETWORK_POLICY = Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
EVENT = Resource("v1", "Event", "events")  # read only: status reasons quote them
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases")  # leader election (leader.py)

# The kinds llm-launch creates, in the order they are deleted (the autoscaler first, so it
# cannot scale a workload that is going away; the forwarder token's Secret last, as pods
# still starting read it).
MANAGED: tuple[Resource, ...] = (
    HPA,
    SERVICE,
    LEADER_WORKER_SET,
    DEPLOYMENT,
    NETWORK_POLICY,  # after the workloads: their pods stay covered while they go
    SECRET,
)
_BY_KIND = {(r.api_version, r.kind): r for r in (*MANAGED, POD)}


def resource_of(obj: Mapping[str, Any]) -> Resource:
    """The resource type of a manifest, from its apiVersion and kind."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key not in _BY_KIND:
        raise ValueError(f"llm-launch does not manage {key[1]} objects of {key[0]}")
    return _BY_KIND[key]


@dataclass(frozen=True)
class ObjectList:
    items: list[Object]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: Object


class KubeClient:
    """JSON in, JSON out, our errors only. One per backend; `close` releases it."""

    def __init__(self, api: ApiClient, *, request_timeout_s: float = 30.0) -> None:
        self._api = api
        self._api.user_agent = FIELD_MANAGER
        self._timeout = request_timeout_s
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, **options: float
    ) -> KubeClient:
        """A client for an explicit kubeconfig; else `$KUBECONFIG`; else the pod's service
        account when running in a cluster; else `~/.kube/config`."""
        configuration = type.__call__(Configuration)  # a fresh one, not the global default
        path = kubeconfig or os.environ.get("KUBECONFIG")
        loader = None
        try:
            if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                path = path or str(Path.home() / ".kube" / "config")
                loader = await kube_config.load_kube_config(
                    config_file=path,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except Exception as exc:  # the library raises many types for a bad config
            where = path or "the in-cluster service account"
            message = f"cannot load Kubernetes config from {where}: {exc}"
            raise KubeconfigError(message) from exc
        client = cls(ApiClient(configuration), **options)
        if loader is not None and _token_expires(loader):
            client._refresher = asyncio.create_task(
                kube_config.refresh_token(loader, configuration), name="kube-token-refresh"
            )
        return client

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def get(self, resource: Resource, namespace: str, name: str) -> Object:
        what = f"get {resource.kind} {namespace}/{name}"
        return _json(await self._request("GET", resource.path(namespace, name), what))

    async def list(self, resource: Resource, namespace: str, selector: str) -> ObjectList:
        what = f"list {resource.kind} objects in {namespace} ({selector})"
        query = [("labelSelector", selector)]
        body = _json(await self._request("GET", resource.path(namespace), what, query=query))
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return ObjectList(list(body.get("items") or []), version)

    async def create(self, resource: Resource, namespace: str, obj: Object) -> Object:
        what = f"create {resource.kind} {namespace}/{obj['metadata']['name']}"
        return _json(await self._request("POST", resource.path(namespace), what, body=obj))

    async def replace(self, resource: Resource, namespace: str, obj: Object) -> Object:
        """PUT: an update that the server refuses (409 Conflict) unless
        `metadata.resourceVersion` is still the stored one (optimistic concurrency)."""
        name = obj["metadata"]["name"]
        what = f"update {resource.kind} {namespace}/{name}"
        return _json(await self._request("PUT", resource.path(namespace, name), what, body=obj))

    async def apply(
        self,
        resource: Resource,
        namespace: str,
        obj: Object,
        *,
        manager: str = FIELD_MANAGER,
        force: bool = True,
    ) -> Object:
        """Server-side apply of a manifest (by default `fieldManager=llm-launch`,
        `force=true`; another manager and no force to hand a field over). Strict field
        validation: a field the server does not know (an older CRD, a typo) is refused with
        its name instead of silently pruned ("Kubernetes API field validation")."""
        name = obj["metadata"]["name"]
        query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
        query.append(("fieldValidation", "Strict"))
        data = await self._request(
            "PATCH",
            resource.path(namespace, name),
            f"apply {resource.kind} {namespace}/{name}",
            query=query,
            body=obj,
            content_type=APPLY_PATCH,
        )
        return _json(data)

    async def delete(
        self, resource: Resource, namespace: str, name: str, propagation: str = "Foreground"
    ) -> None:
        """Ask for deletion (returns before the object is gone; see apply.wait_gone)."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        what = f"delete {resource.kind} {namespace}/{name}"
        await self._request("DELETE", resource.path(namespace, name), what, body=options)

    async def get_crd(self, name: str) -> Object:
        """A CustomResourceDefinition (apiextensions.k8s.io/v1, cluster-scoped) by name."""
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        return _json(await self._request("GET", path, f"get CustomResourceDefinition {name}"))

    async def read_log(
        self, namespace: str, pod: str, container: str, tail: int, previous: bool = False
    ) -> str:
        query = [("container", container), ("tailLines", str(tail))]
        if previous:
            query.append(("previous", "true"))
        what = f"read the log of container {container} of pod {namespace}/{pod}"
        path = POD.path(namespace, pod, "log")
        data = await self._request("GET", path, what, query=query, accept="text/plain")
        return data.decode(errors="replace")

    async def follow_log(
        self, namespace: str, pod: str, container: str, tail: int
    ) -> AsyncGenerator[bytes, None]:
        """The log's last `tail` lines, then what the container writes, as the API server
        streams it (`follow=true`) until the container stops or the caller stops iterating
        (the connection is then closed). An error (no such pod) is raised before anything
        is returned."""
        query = [("container", container), ("tailLines", str(tail)), ("follow", "true")]
        what = f"follow the log of container {container} of pod {namespace}/{pod}"
        # No read timeout: a quiet container is not a broken connection.
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout)
        headers = {"Accept": "text/plain"}
        path = POD.path(namespace, pod, "log")
        response = await self._send("GET", path, what, query, None, timeout, headers)
        if response.status >= 400:
            try:
                data = await response.read()
            finally:
                response.release()
            raise from_status(response.status, status_body(data), what)
        return _log_chunks(response, what)

    async def watch(
        self,
        resource: Resource,
        namespace: str,
        selector: str,
        resource_version: str,
        timeout_s: int = 240,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after `resource_version` until the server ends the stream (`timeout_s`).
        Raises ResourceExpired (410) when that version is too old: list again."""
        what = f"watch {resource.kind} objects in {namespace} ({selector})"
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_s)),
            ("labelSelector", selector),
            ("resourceVersion", resource_version),
        ]
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=timeout_s + 30)
        response = await self._send("GET", resource.path(namespace), what, query, None, timeout)
        try:
            if response.status >= 400:
                raise from_status(response.status, status_body(await response.read()), what)
            async for line in response.content:
                if line.strip():
                    yield _event(line, what)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KubernetesUnavailable(f"{what}: the stream broke: {_describe(exc)}") from exc
        finally:
            response.release()

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._api.close()

    # -- transport -----------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Object | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> bytes:
        headers = {"Content-Type": content_type, "Accept": accept}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        response = await self._send(method, path, what, query, body, timeout, headers)
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubernetesUnavailable(f"{what}: {_describe(exc)}") from exc
        finally:
            response.release()
        if response.status >= 400:
            retry_after = response.headers.get("Retry-After")
            raise from_status(response.status, status_body(data), what, retry_after)
        return data

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        query: Sequence[tuple[str, str]],
        body: Object | None,
        limits: aiohttp.ClientTimeout,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers or {"Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=limits,
            )
        except OpenApiException as exc:
            code = int(getattr(exc, "status", 0) or 0)
            raise from_status(code, status_body(getattr(exc, "body", None)), what) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubernetesUnavailable(
                f"{what}: cannot reach the Kubernetes API at {self.host}: {_describe(exc)}"
            ) from exc
        return response


def _json(data: bytes) -> Object:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise KubernetesError(f"the Kubernetes API answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise KubernetesError("the Kubernetes API answered with JSON that is not an object")
    return body


def _event(line: bytes, what: str) -> WatchEvent:
    event = json.loads(line)
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        raise from_status(int(obj.get("code") or 500), obj, what)
    return WatchEvent(str(event.get("type")), obj)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _token_expires(loader: Any) -> bool:
    """Whether the kubeconfig's credentials expire (exec plugin or GCP) and need refreshing."""
    user = getattr(loader, "_user", None)
    return getattr(loader, "provider", None) == "gcp" or (user is not None and "exec" in user)


async def _log_chunks(response: aiohttp.ClientResponse, what: str) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KubernetesUnavailable(f"{what}: the stream broke: {_describe(exc)}") from exc
    finally:
        response.close()  # never back to the pool half-read
