"""The Kubernetes client layer against a local server speaking the Kubernetes API."""
