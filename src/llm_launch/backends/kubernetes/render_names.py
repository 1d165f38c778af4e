"""Names, labels and selectors of the Kubernetes objects llm-launch renders for an endpoint.

Used by `render` (which stamps them on every object) and by the Kubernetes backend's
apply/watch modules (which find, select and garbage-collect objects by them); the single
source of truth for how an endpoint's objects are named and labelled. Pure functions.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from llm_launch.domain.names import K8S_NAME_PREFIX, OWNER_SUFFIX_LENGTH, max_name_length
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
    "network_policy_name",
    "object_labels",
    "object_name",
    "owner_suffix",
    "pod_selector",
    "secret_name",
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


def owner_suffix(owner: str, endpoint_name: str) -> str:
    """`OWNER_SUFFIX_LENGTH` base32 characters of a hash of owner and endpoint name.

    Owner-scoped names let two owners each have an endpoint `foo` (their objects no longer
    share the name `llm-foo`), and are deterministic, so `llm-launch render --owner O`
    names objects as the backend does for O. The endpoint name is hashed too so that an
    endpoint stored before the suffix existed, whose name must now be shortened to fit,
    still gets names of its own. 30 bits: two endpoints of one name colliding is unlikely,
    and `apply` refuses it (without saying whose the other object is) when it happens.
    """
    digest = hashlib.sha256(f"{owner}\n{endpoint_name}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:OWNER_SUFFIX_LENGTH]


def object_name(owner: str, spec: EndpointSpec) -> str:
    """The LeaderWorkerSet, Deployment and HorizontalPodAutoscaler name:
    `llm-<name>-<owner suffix>`.

    The domain keeps new names short enough (`max_name_length`); a longer name stored
    before the suffix existed is cut to fit, so its objects stay valid after an upgrade.
    """
    room = max_name_length(nodes_per_worker=spec.nodes_per_worker, max_workers=spec.max_workers)
    room = max(room, 1)  # no name fits a huge max_workers; the API server says so
    return f"{K8S_NAME_PREFIX}{spec.name[:room]}-{owner_suffix(owner, spec.name)}"


def network_policy_name(owner: str, spec: EndpointSpec) -> str:
    """The endpoint's NetworkPolicy: the object name (names are unique per kind)."""
    return object_name(owner, spec)


def secret_name(owner: str, spec: EndpointSpec) -> str:
    """The Secret holding the endpoint's forwarder token (a Secret name may be 253 long)."""
    return f"{object_name(owner, spec)}-token"


def service_name(owner: str, spec: EndpointSpec) -> str:
    """The Service in front of the endpoint's forwarders.

    Multi-node: `<object name>-leader`, because the LeaderWorkerSet controller itself
    creates a headless Service named after the LeaderWorkerSet (the subdomain behind
    LWS_LEADER_ADDRESS); a Service of ours under that name would stop it from doing so.
    Single-node: the object name (at most 63 characters, as the domain's limit keeps it).
    """
    base = object_name(owner, spec)
    return f"{base}-leader" if spec.is_multinode else base


def service_url(owner: str, spec: EndpointSpec, namespace: str, port: int = 80) -> str:
    """Base URL of the endpoint's Service from inside the cluster."""
    suffix = "" if port == 80 else f":{port}"
    return f"http://{service_name(owner, spec)}.{namespace}.svc{suffix}"


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
