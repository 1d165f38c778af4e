"""Names, labels and selectors of the Kubernetes objects llm-launch renders for an endpoint.

Used by `render` (which stamps them on every object) and by the Kubernetes backend's
apply/watch modules (which find, select and garbage-collect objects by them); the single
source of truth for how an endpoint's objects are named and labelled. Pure functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from llm_launch.domain.names import K8S_NAME_PREFIX
from llm_launch.domain.spec import EndpointSpec

__all__ = [
    "ANNOTATION_CONTROL_PLANE",
    "ANNOTATION_GENERATION",
    "LABEL_ENDPOINT",
    "LABEL_ENDPOINT_ID",
    "LABEL_MANAGED_BY",
    "LABEL_OWNER",
    "LABEL_ROLE",
    "LWS_NAME_LABEL",
    "LWS_WORKER_INDEX_LABEL",
    "MANAGED_BY",
    "MANAGED_SELECTOR",
    "EndpointIdentity",
    "derived_endpoint_id",
    "identity_labels",
    "object_labels",
    "object_name",
    "pod_selector",
    "service_name",
    "service_url",
]

LABEL_ENDPOINT = "llm-launch.io/endpoint"
LABEL_ENDPOINT_ID = "llm-launch.io/endpoint-id"
LABEL_OWNER = "llm-launch.io/owner"
LABEL_ROLE = "llm-launch.io/role"  # on pods: "leader" or "worker"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "llm-launch"
# List every object llm-launch manages (garbage collection): a label selector string.
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
# On top-level objects only (a pod template change would roll the pods).
ANNOTATION_GENERATION = "llm-launch.io/generation"
# Which control plane applied an object: garbage collection only ever deletes its own,
# so two installations may share a namespace.
ANNOTATION_CONTROL_PLANE = "llm-launch.io/control-plane"

# Set by the LeaderWorkerSet controller on every pod of a group.
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


@dataclass(frozen=True)
class EndpointIdentity:
    """Who an endpoint's objects belong to: the stored endpoint, or a render request."""

    name: str
    endpoint_id: str
    owner: str
    generation: int | None = None  # None: no generation annotation (`llm-launch render`)


def derived_endpoint_id(owner: str, name: str) -> str:
    """A stable id for objects rendered without a stored endpoint (`llm-launch render`)."""
    return "ep-" + hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()[:16]


def object_name(endpoint_name: str) -> str:
    """The LeaderWorkerSet, Deployment and HorizontalPodAutoscaler name: `llm-<name>`."""
    return K8S_NAME_PREFIX + endpoint_name


def service_name(spec: EndpointSpec) -> str:
    """The Service in front of the endpoint's forwarders.

    Multi-node: `llm-<name>-leader`, because the LeaderWorkerSet controller itself
    creates a headless Service named after the LeaderWorkerSet (the subdomain behind
    LWS_LEADER_ADDRESS); a Service of ours under that name would stop it from doing so.
    Single-node: `llm-<name>` (the domain keeps it within 63 characters).
    """
    base = object_name(spec.name)
    return f"{base}-leader" if spec.is_multinode else base


def service_url(spec: EndpointSpec, namespace: str, port: int = 80) -> str:
    """Base URL of the endpoint's Service from inside the cluster."""
    suffix = "" if port == 80 else f":{port}"
    return f"http://{service_name(spec)}.{namespace}.svc{suffix}"


def identity_labels(identity: EndpointIdentity) -> dict[str, str]:
    """Labels on every object and pod of the endpoint (values are valid label values:
    the name is a DNS label, the id is hex with a prefix, owners are checked at load)."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_ENDPOINT: identity.name,
        LABEL_ENDPOINT_ID: identity.endpoint_id,
        LABEL_OWNER: identity.owner,
    }


def object_labels(identity: EndpointIdentity, user_labels: Mapping[str, str]) -> dict[str, str]:
    """The request's labels, then ours (ours win; the domain reserves our prefix)."""
    return {**dict(user_labels), **identity_labels(identity)}


def pod_selector(identity: EndpointIdentity) -> dict[str, str]:
    """Selects this endpoint's pods, and not those of an earlier endpoint of the same name."""
    return {LABEL_ENDPOINT_ID: identity.endpoint_id}
