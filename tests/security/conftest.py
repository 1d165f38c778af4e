"""Fixtures the security tests share with the Kubernetes integration tests: the backend
against the fake API server (`kube_api`, from tests/conftest.py)."""

from tests.integration.kubernetes.conftest import backend, kubeconfig

__all__ = ["backend", "kubeconfig"]
