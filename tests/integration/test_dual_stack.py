"""`serve --host ::` listens on both address families, as the install manifests run it:
IPv4-only and IPv6-only Services and probes both reach it (issue 10 item 3)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.support.server import RunningServer


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="this machine has no IPv6 loopback")
def test_a_server_on_host_colons_answers_over_ipv4_and_ipv6(tmp_path: Path) -> None:
    env = {"LLM_LAUNCH_HOST": "::", "LLM_LAUNCH_API_KEYS": "alice:dual-stack-key-0123456789"}
    server = RunningServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env)
    try:
        server.start()  # polls http://127.0.0.1:PORT/healthz: IPv4 reaches it
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200
        assert httpx.get(f"http://[::1]:{server.port}/healthz").status_code == 200
    finally:
        server.stop()
