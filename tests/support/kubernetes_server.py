"""A real `llm-launch serve --backend kubernetes` against the fake API server, for e2e tests:
one owner (alice) and a client that sends her key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.fakes.kube_api import FakeKubeApi
from tests.support.server import RunningServer

KEY = "kube-key-0123456789abcdef"


@contextmanager
def serving_on_kubernetes(kube_api: FakeKubeApi, tmp_path: Path) -> Iterator[httpx.Client]:
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        "LLM_LAUNCH_API_KEYS": f"alice:{KEY}",
        "LLM_LAUNCH_BACKEND": "kubernetes",
        "LLM_LAUNCH_KUBERNETES_NAMESPACE": "default",
        "KUBECONFIG": str(kubeconfig),
    }
    server = RunningServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60) as http:
            yield http
    finally:
        server.stop()
