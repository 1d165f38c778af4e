"""The NetworkPolicy of an endpoint: who may reach its pods, and on which ports.

Called by `render` (one policy per endpoint, named, labelled and annotated like its other
objects, applied and garbage-collected with them). Pure.

Rules, following "Network Policies" (https://kubernetes.io/docs/concepts/
services-networking/network-policies/):
- the policy selects every pod of the endpoint (its endpoint-id label) for Ingress only:
  a pod selected by an Ingress policy accepts only what some policy allows;
- pods of the same endpoint reach each other on any port: the engine and rendezvous
  ports, and the further ports NCCL, Gloo and the engines open between the nodes of a
  group, which are chosen at run time (a worker's preStop also calls its leader's
  forwarder). A policy cannot say "the same group as the target pod" (a `from` selector
  is fixed, and LWS's group label values are per group), so the unit is the endpoint;
- the forwarder port from the control plane's pods: its API pods and its `llm-launch
  gateway` pods, one peer each (a pod selector, in the control plane's namespace when that
  is another), which call it with the endpoint's token, and, when configured, from a
  metrics namespace (Prometheus scraping /metrics for the autoscaler). Two peers rather
  than one label both Deployments share, so that API pods of an earlier release, still
  running during an upgrade, stay admitted (`NetworkPolicySettings`);
- the kubelet's probes need no rule: "traffic to and from the node where a Pod is running
  is always allowed, regardless of the IP address of the Pod or the node" (same page,
  the ipBlock caveat);
- egress is not restricted (no Egress policy type): the startup program downloads
  weights from wherever the checkpoint lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_launch.backends.kubernetes.config import NetworkPolicySettings

__all__ = ["NAMESPACE_NAME_LABEL", "NETWORK_POLICY_API_VERSION", "network_policy_spec"]

Manifest = dict[str, Any]
NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1"
# Set by the API server on every namespace (Kubernetes 1.22+, "Well-Known Labels,
# Annotations and Taints": kubernetes.io/metadata.name), so a namespace is selectable by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def network_policy_spec(
    endpoint_pods: dict[str, str], forwarder_port: int, settings: NetworkPolicySettings
) -> Manifest:
    """The policy's spec: `endpoint_pods` selects the endpoint's pods (render_names.
    pod_selector); the forwarder listens on `forwarder_port`."""
    callers = [settings.control_plane_pod_labels]
    if settings.gateway_pod_labels is not None:
        callers.append(settings.gateway_pod_labels)
    forwarder_peers = [_control_plane_peer(labels, settings) for labels in callers]
    if settings.metrics_namespace is not None:
        forwarder_peers.append({"namespaceSelector": _namespace(settings.metrics_namespace)})
    return {
        "podSelector": {"matchLabels": dict(endpoint_pods)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": dict(endpoint_pods)}}]},
            {
                "from": forwarder_peers,
                "ports": [{"protocol": "TCP", "port": forwarder_port}],
            },
        ],
    }


def _control_plane_peer(labels: Mapping[str, str], settings: NetworkPolicySettings) -> Manifest:
    peer: Manifest = {"podSelector": {"matchLabels": dict(labels)}}
    if settings.control_plane_namespace is not None:
        # Both selectors in one peer: those pods in that namespace only.
        peer["namespaceSelector"] = _namespace(settings.control_plane_namespace)
    return peer


def _namespace(name: str) -> Manifest:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: name}}
