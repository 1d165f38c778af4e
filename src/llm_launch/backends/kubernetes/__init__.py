"""The Kubernetes backend: endpoints run as LeaderWorkerSets (multi-node) or Deployments."""
