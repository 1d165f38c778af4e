"""Network namespaces as the pods of one group, each with its own IPv6 address and hosts file.

Used by tests/multihost/. A `NetnsGroup` is a "switch" namespace holding a bridge, and one
namespace per pod joined to it by a veth pair (`eth0` in the pod). Nothing is created in the
machine's own namespace. Addresses come from a random ULA prefix `fdab:<x>::/64` (never
`fd00::/64`, which this machine's own interface uses) and are added with `nodad`, so they work
at once. Names resolve through `/etc/netns/<ns>/hosts`, which `ip netns exec` bind-mounts over
/etc/hosts (with an `nsswitch.conf` of `hosts: files`, so no DNS query ever leaves).
Every name carries a random tag, so a crashed run cannot collide with the next; `close()`
ends the processes started here and removes every namespace and /etc/netns directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

NETNS_ETC = Path("/etc/netns")
_BASE_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


def ip(*args: str) -> None:
    """Run `ip ARGS`; raise with its message if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def netns_unavailable_reason() -> str | None:
    """Why these tests cannot run here (None: they can). Tries `ip netns add` once."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install -y iproute2)"
    name = f"llt{secrets.token_hex(3)}-probe"
    try:
        ip("netns", "add", name)
    except RuntimeError as exc:
        return f"network namespaces are not permitted here: {exc}"
    ip("netns", "delete", name)
    return None


@dataclass(frozen=True)
class PodNamespace:
    key: str  # short, for namespace and interface names
    hostname: str  # the pod's DNS name, e.g. llm-r1-0-1.llm-r1.default
    namespace: str
    ip: str

    @property
    def hosts_file(self) -> Path:
        return NETNS_ETC / self.namespace / "hosts"


class NetnsGroup:
    """Pods on one bridge. Use as a context manager, or call `create()` and `close()`."""

    def __init__(self) -> None:
        self.tag = f"llt{secrets.token_hex(3)}"
        self.prefix = f"fdab:{secrets.randbelow(0xFFFF) + 1:x}"
        self.switch = f"{self.tag}-sw"
        self.pods: dict[str, PodNamespace] = {}
        self._namespaces: list[str] = []
        self._made_netns_etc = False
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> NetnsGroup:
        return self.create()

    def __exit__(self, *_: object) -> None:
        self.close()

    def create(self) -> NetnsGroup:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def add_pod(self, key: str, hostname: str) -> PodNamespace:
        assert re.fullmatch(r"[a-z0-9]{1,8}", key), key
        pod = PodNamespace(
            key, hostname, f"{self.tag}-{key}", f"{self.prefix}::{len(self.pods) + 1:x}"
        )
        self._add_namespace(pod.namespace)
        port = f"v{key}"
        ip("-n", self.switch, "link", "add", port, "type", "veth",
           "peer", "name", "eth0", "netns", pod.namespace)  # fmt: skip
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", pod.namespace, "link", "set", "lo", "up")
        ip("-n", pod.namespace, "addr", "add", f"{pod.ip}/64", "dev", "eth0", "nodad")
        ip("-n", pod.namespace, "link", "set", "eth0", "up")
        etc = NETNS_ETC / pod.namespace
        if not NETNS_ETC.exists():
            self._made_netns_etc = True
        etc.mkdir(parents=True)
        nsswitch = Path("/etc/nsswitch.conf")
        lines = nsswitch.read_text().splitlines() if nsswitch.exists() else []
        lines = [line for line in lines if not line.startswith("hosts:")] + ["hosts: files"]
        (etc / "nsswitch.conf").write_text("\n".join(lines) + "\n")
        (etc / "resolv.conf").write_text("nameserver ::1\noptions timeout:1 attempts:1\n")
        self.pods[key] = pod
        self.set_hosts(pod, [])
        return pod

    def set_hosts(self, pod: PodNamespace, known: Sequence[PodNamespace]) -> None:
        """What `pod` can resolve: the names of `known`. Rewritten in place (same inode),
        so a process already inside the namespace sees the change."""
        entries = "".join(f"{p.ip} {p.hostname}\n" for p in known)
        with pod.hosts_file.open("w") as f:
            f.write(_BASE_HOSTS + entries)

    def popen(
        self, pod: PodNamespace, argv: Sequence[str], env: Mapping[str, str], log: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside the pod's namespace; `close()` ends it if it still runs."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", pod.namespace, *argv],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._processes.append(process)
        return process

    def close(self) -> None:
        errors = []
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only what we started
                process.wait()
        for namespace in reversed(self._namespaces):
            try:
                ip("netns", "delete", namespace)
            except RuntimeError as exc:
                errors.append(str(exc))
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
        if self._made_netns_etc:
            with contextlib.suppress(OSError):  # not empty: another run's namespaces are there
                NETNS_ETC.rmdir()
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
