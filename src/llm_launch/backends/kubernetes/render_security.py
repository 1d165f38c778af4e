"""Security contexts of an endpoint's pods: the least each container needs.

Called by `render_pod` for every pod template (leader, worker, single-node). Pure.

What each container gets, measured against the Pod Security Standards
(https://kubernetes.io/docs/concepts/security/pod-security-standards/) and set as
"Configure a Security Context for a Pod or Container" describes
(https://kubernetes.io/docs/tasks/configure-pod-container/security-context/):

- the pod: seccomp `RuntimeDefault` for every container (the container runtime's default
  system-call filter; restricted requires it, and without it a pod runs Unconfined unless
  the kubelet's SeccompDefault is on);
- the forwarder: restricted in full. Non-root (a fixed user id, since the engine images run
  as root and `runAsNonRoot` alone would refuse them), read-only root file system (it
  writes no file: it serves HTTP and logs to stdout), no capabilities, no privilege
  escalation, and `/` as working directory (the image's WORKDIR may not be readable by
  that user);
- the engine: baseline, plus only what RDMA adds. No privilege escalation, every
  capability dropped except those the GPU type's catalog entry names for its RDMA devices
  (IPC_LOCK: memory registered with an RDMA NIC is pinned, which past the default
  locked-memory limit needs CAP_IPC_LOCK). GPUs come through the device plugin, which
  hands the container its device nodes, so no privilege is needed for them. It stays root
  with a writable root file system: the engine images run as root (the upstream images do;
  hostPath caches are created root-owned by the kubelet) and the engines write JIT and
  kernel caches under the root file system. Hence baseline, not restricted: restricted
  forbids running as root, and IPC_LOCK is outside baseline's allowed capabilities, so an
  RDMA GPU type needs a namespace enforcing `privileged`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_launch.engines.common import ENGINE_CONTAINER
from llm_launch.engines.plan import ContainerPlan

if TYPE_CHECKING:  # render_pod imports this module
    from llm_launch.backends.kubernetes.render_pod import PodContext

__all__ = ["container_security", "engine_capabilities", "pod_security"]

Manifest = dict[str, Any]
RUNTIME_DEFAULT = {"type": "RuntimeDefault"}


def pod_security(ctx: PodContext) -> Manifest:
    """The pod-level fields: seccomp RuntimeDefault for all containers."""
    return {"securityContext": {"seccompProfile": dict(RUNTIME_DEFAULT)}}


def container_security(plan: ContainerPlan, ctx: PodContext) -> Manifest:
    """The container-level fields of the engine or the forwarder (module docstring)."""
    if plan.name == ENGINE_CONTAINER:
        capabilities: Manifest = {"drop": ["ALL"]}
        if added := engine_capabilities(ctx):
            capabilities["add"] = list(added)
        return {
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": capabilities,
            }
        }
    user = ctx.config.forwarder_user_id
    return {
        "workingDir": "/",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": user,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def engine_capabilities(ctx: PodContext) -> tuple[str, ...]:
    """What the engine container adds: the GPU type's capabilities, on multi-node pods
    only (where its extra resources, the RDMA devices, are requested too)."""
    if not ctx.in_leaderworkerset or ctx.gpu is None:
        return ()
    return ctx.gpu.capabilities
