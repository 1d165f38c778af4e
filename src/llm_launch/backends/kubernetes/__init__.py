"""The Kubernetes backend: endpoints as LeaderWorkerSets (multi-node) or Deployments.

`config.KubernetesConfig` holds the installation's settings; `render` turns an endpoint
into plain-dict Kubernetes objects (pure; also behind `llm-launch render`); the client,
apply and watch modules send them to the API server and observe what runs. Only this
package may import a Kubernetes client library, and only outside the render modules.
"""
