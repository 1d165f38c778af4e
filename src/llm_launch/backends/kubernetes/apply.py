"""Apply, prune and delete an endpoint's Kubernetes objects.

Caller: `backend.KubernetesBackend` (apply, teardown, collect_garbage). Next hop:
`client.KubeClient`.

Apply is server-side apply (`PATCH`, `application/apply-patch+yaml`, fieldManager
`llm-launch`, `force=true`), not create-then-replace:
- one request per object whether it exists or not, and idempotent by construction: the
  API server changes nothing (no new resourceVersion, no rollout) when the manifest is
  unchanged, so re-applying after a crash or on a resync is free;
- it merges by field ownership, so fields others own survive: the HPA's `replicas` (the
  renderer omits `replicas` when autoscaled), the Service's allocated `clusterIP`, and
  defaults the API server filled in. A PUT would have to copy each of those back by hand;
- `force` takes fields over from another manager (say a `kubectl edit`): the endpoint's
  spec is the source of truth. It never takes over a foreign object, though: an object of
  the same name that does not carry our endpoint id is refused with a Conflict first,
  whose message says nothing about that object's endpoint (it may be another owner's).
A 409 on the patch itself (only an optimistic-concurrency race once `force` is set) is
retried a few times, then surfaced as our Conflict; the reconciler retries next pass.
An error about a Secret (the forwarder token's) has the Secret's values redacted before
it is raised: its message becomes the endpoint's status_reason.

Delete uses foreground propagation, so an object disappears only after its dependents
(the LeaderWorkerSet's StatefulSets and pods) are gone; `wait_gone` polls until nothing
labelled with the endpoint id is left, pods included, or raises DeletionTimeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from llm_launch.backends.kubernetes.client import (
    HPA,
    MANAGED,
    POD,
    KubeClient,
    ObjectList,
    Resource,
    resource_of,
)
from llm_launch.backends.kubernetes.errors import (
    DeletionTimeout,
    KubernetesError,
    ObjectBeingDeleted,
    ObjectConflict,
    ObjectNotFound,
)
from llm_launch.backends.kubernetes.render_names import (
    ANNOTATION_CONTROL_PLANE,
    LABEL_ENDPOINT_ID,
    MANAGED_SELECTOR,
)
from llm_launch.backends.kubernetes.replicas import autoscaled_minimums, hand_over
from llm_launch.domain.errors import FieldError, InvalidRequest, LaunchError

Object = dict[str, Any]
APPLY_ATTEMPTS = 3


def endpoint_selector(endpoint_id: str) -> str:
    return f"{LABEL_ENDPOINT_ID}={endpoint_id}"


async def apply_objects(
    client: KubeClient, namespace: str, endpoint_id: str, objects: Sequence[Object]
) -> None:
    """Apply every object (in order), then delete the endpoint's objects it no longer has.
    An HPA it no longer has goes first, so it cannot scale the workload back while the
    workload takes its fixed `replicas` again; a workload an HPA takes over keeps its
    replica count (`replicas.hand_over`)."""
    keep = {(resource_of(o).kind, o["metadata"]["name"]) for o in objects}
    await prune(client, namespace, endpoint_id, keep, (HPA,))
    minimums = autoscaled_minimums(objects)
    for obj in objects:
        target = minimums.get((obj["kind"], obj["metadata"]["name"]))
        await apply_one(client, namespace, endpoint_id, obj, min_replicas=target)
    await prune(client, namespace, endpoint_id, keep)


async def apply_one(
    client: KubeClient,
    namespace: str,
    endpoint_id: str,
    obj: Object,
    *,
    min_replicas: int | None = None,
) -> Object:
    """Apply one object; `min_replicas` when an HPA scales it (see `replicas.hand_over`)."""
    try:
        return await _apply_one(client, namespace, endpoint_id, obj, min_replicas)
    except LaunchError as exc:
        hidden = _secret_values(obj)
        if hidden and any(value in str(exc) for value in hidden):
            raise _redacted(exc, hidden) from None  # not chained: the cause holds it too
        raise


async def _apply_one(
    client: KubeClient, namespace: str, endpoint_id: str, obj: Object, min_replicas: int | None
) -> Object:
    resource = resource_of(obj)
    namespace = obj["metadata"].get("namespace") or namespace
    current = await _check_ours(client, resource, namespace, obj["metadata"]["name"], endpoint_id)
    if min_replicas is not None:
        await hand_over(client, resource, namespace, obj, current, min_replicas)
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            return await client.apply(resource, namespace, obj)
        except ObjectConflict:
            if attempt == APPLY_ATTEMPTS:
                raise
            await asyncio.sleep(0.1 * attempt)
        except ObjectNotFound as exc:  # an apply creates: 404 means the kind is unknown
            raise KubernetesError(_missing_kind(resource, exc.message)) from exc
    raise AssertionError("unreachable")


async def prune(
    client: KubeClient,
    namespace: str,
    endpoint_id: str,
    keep: set[tuple[str, str]],
    resources: Sequence[Resource] = MANAGED,
) -> list[str]:
    """Delete the endpoint's objects (of `resources`) not in `keep` (kind, name): say its
    HPA once autoscaling is off. Returns what it deleted, as `Kind/name`."""
    deleted = []
    for resource in resources:
        for item in (
            await list_or_empty(client, resource, namespace, endpoint_selector(endpoint_id))
        ).items:
            name = item["metadata"]["name"]
            if (resource.kind, name) not in keep and not item["metadata"].get("deletionTimestamp"):
                await delete_quietly(client, resource, namespace, name)
                deleted.append(f"{resource.kind}/{name}")
    return deleted


async def delete_endpoint(
    client: KubeClient, namespace: str, endpoint_id: str, timeout_s: float, poll_s: float
) -> None:
    """Delete everything labelled with the endpoint id and return once it is gone."""
    selector = endpoint_selector(endpoint_id)
    for resource in MANAGED:
        for item in (await list_or_empty(client, resource, namespace, selector)).items:
            await delete_quietly(client, resource, namespace, item["metadata"]["name"])
    await wait_gone(client, namespace, selector, timeout_s, poll_s)


async def delete_quietly(client: KubeClient, resource: Resource, namespace: str, name: str) -> bool:
    """Delete (foreground); False when it was already gone (404), which is fine."""
    try:
        await client.delete(resource, namespace, name, propagation="Foreground")
    except ObjectNotFound:
        return False
    return True


async def wait_gone(
    client: KubeClient, namespace: str, selector: str, timeout_s: float, poll_s: float
) -> None:
    """Poll until no managed object or pod matches `selector`; DeletionTimeout after
    `timeout_s`, naming what is left and its finalizers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        left = [
            (resource, item)
            for resource in (*MANAGED, POD)
            for item in (await list_or_empty(client, resource, namespace, selector)).items
        ]
        if not left:
            return
        if loop.time() >= deadline:
            raise DeletionTimeout(
                f"still present {timeout_s:.0f}s after deletion in namespace {namespace}: "
                + ", ".join(_describe_left(left[:5]))
                + (f" and {len(left) - 5} more" if len(left) > 5 else "")
            )
        await asyncio.sleep(poll_s)


async def collect_garbage(
    client: KubeClient, namespace: str, live_endpoint_ids: set[str], control_plane_id: str
) -> list[str]:
    """Delete (without waiting) the objects of endpoints that no longer exist. Only objects
    this control plane applied (they carry its id) are candidates, so the output of
    `llm-launch render` applied by hand, and another installation's objects in the same
    namespace, are left alone. Returns `Kind/name`s."""
    deleted = []
    for resource in MANAGED:
        for item in (await list_or_empty(client, resource, namespace, MANAGED_SELECTOR)).items:
            metadata = item["metadata"]
            endpoint_id = (metadata.get("labels") or {}).get(LABEL_ENDPOINT_ID)
            annotations = metadata.get("annotations") or {}
            applied = annotations.get(ANNOTATION_CONTROL_PLANE) == control_plane_id
            if not endpoint_id or endpoint_id in live_endpoint_ids or not applied:
                continue
            if await delete_quietly(client, resource, namespace, metadata["name"]):
                deleted.append(f"{resource.kind}/{metadata['name']}")
    return deleted


async def list_or_empty(
    client: KubeClient, resource: Resource, namespace: str, selector: str
) -> ObjectList:
    """A list, or none when the kind does not exist here (the LeaderWorkerSet CRD on a
    cluster that only runs single-node endpoints)."""
    try:
        return await client.list(resource, namespace, selector)
    except ObjectNotFound:
        return ObjectList([], "")


async def _check_ours(
    client: KubeClient, resource: Resource, namespace: str, name: str, endpoint_id: str
) -> Object | None:
    """The object of that name (None when there is none), if it is this endpoint's."""
    try:
        current = await client.get(resource, namespace, name)
    except ObjectNotFound:
        return None
    metadata = current.get("metadata") or {}
    owner = (metadata.get("labels") or {}).get(LABEL_ENDPOINT_ID)
    what = f"{resource.kind} {namespace}/{name}"
    if metadata.get("deletionTimestamp"):
        raise ObjectBeingDeleted(f"{what} is being deleted; it will be applied again once gone")
    if owner != endpoint_id:
        # Whatever holds the name (another owner's endpoint whose owner suffix collides,
        # or an object llm-launch does not manage) is none of this caller's business:
        # say neither its endpoint nor its id.
        raise ObjectConflict(
            f"the Kubernetes name {name} ({resource.kind} in namespace {namespace}) is taken "
            "by an object llm-launch does not manage for this endpoint; use another endpoint name"
        )
    return current


def _secret_values(obj: Object) -> list[str]:
    """A Secret's values, encoded and decoded: what an error about it must not show (an
    API server's message may quote the value it refused; it ends up in status_reason)."""
    if obj.get("kind") != "Secret":
        return []
    values = []
    for encoded in (obj.get("data") or {}).values():
        values.append(str(encoded))
        with contextlib.suppress(ValueError):
            values.append(base64.b64decode(str(encoded)).decode())
    values += [str(v) for v in (obj.get("stringData") or {}).values()]
    # Longest first, so that a value containing another is hidden whole.
    return sorted((v for v in values if v), key=len, reverse=True)


def _redacted(exc: LaunchError, hidden: Sequence[str]) -> LaunchError:
    """The same error, of the same class, with every hidden value replaced."""

    def clean(text: str) -> str:
        for value in hidden:
            text = text.replace(value, "[redacted]")
        return text

    if isinstance(exc, InvalidRequest):
        return type(exc)([FieldError(clean(e.field), clean(e.message)) for e in exc.errors])
    return type(exc)(clean(exc.message))


def _missing_kind(resource: Resource, message: str) -> str:
    hint = ""
    if resource.kind == "LeaderWorkerSet":
        hint = (
            "; multi-node endpoints need the LeaderWorkerSet controller and CRD "
            "(https://lws.sigs.k8s.io/docs/installation/)"
        )
    return f"the cluster does not serve {resource.kind} ({resource.api_version}): {message}{hint}"


def _describe_left(left: Iterable[tuple[Resource, Object]]) -> list[str]:
    described = []
    for resource, item in left:
        metadata = item.get("metadata") or {}
        finalizers = metadata.get("finalizers") or []
        extra = f" (finalizers: {', '.join(finalizers)})" if finalizers else ""
        described.append(f"{resource.kind} {metadata.get('name')}{extra}")
    return described
