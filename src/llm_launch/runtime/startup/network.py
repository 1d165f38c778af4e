"""Addresses inside a group: resolve the leader, find this pod's IP, name the workers.

Used by the startup program (`runtime/startup/program.py`) before it starts the engine. Name
resolution goes through the system resolver (`getaddrinfo`), so /etc/hosts, cluster DNS
and `/etc/netns/<ns>/hosts` all work; tests inject their own resolver.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_launch.engines.plan import IpFamily

# (name, family) -> addresses in resolver order; raises OSError when the name does not resolve.
Resolver = Callable[[str, IpFamily], list[str]]


class StartupError(Exception):
    """A step of the startup failed; the message is the one-line reason the pod logs."""


def system_resolver(name: str, family: IpFamily) -> list[str]:
    af = {IpFamily.IPV4: socket.AF_INET, IpFamily.IPV6: socket.AF_INET6}.get(family, 0)
    infos = socket.getaddrinfo(name, None, af, socket.SOCK_STREAM)
    addresses: list[str] = []
    for _, _, _, _, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def family_of(address: str) -> IpFamily:
    return IpFamily.IPV6 if ipaddress.ip_address(address).version == 6 else IpFamily.IPV4


def is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def with_cluster_domain(address: str, cluster_domain: str | None) -> str:
    """`LWS_LEADER_ADDRESS` has no cluster suffix; append the configured one (once)."""
    if not cluster_domain or is_ip_literal(address):
        return address
    suffix = "." + cluster_domain.strip(".")
    return address if address.endswith(suffix) else address + suffix


def pick_address(addresses: Sequence[str], family: IpFamily) -> str | None:
    """The first address of the preferred family; in AUTO mode, the first of any."""
    if family is IpFamily.AUTO:
        return addresses[0] if addresses else None
    return next((a for a in addresses if family_of(a) is family), None)


@dataclass(frozen=True)
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def run(self, attempt: Callable[[], bool], interval: float = 1.0) -> bool:
        """Call `attempt` until it returns True or the deadline passes."""
        end = self.clock() + self.seconds
        while True:
            if attempt():
                return True
            if self.clock() >= end:
                return False
            self.sleep(min(interval, max(0.0, end - self.clock())))


def resolve_one(
    name: str, family: IpFamily, deadline: Deadline, resolver: Resolver = system_resolver
) -> str:
    """Resolve `name` to exactly one IP of the preferred family, retrying until the deadline."""
    found: list[str] = []
    last_error = "no address"

    def attempt() -> bool:
        nonlocal last_error
        try:
            address = pick_address(resolver(name, family), family)
        except OSError as exc:
            last_error = exc.strerror or str(exc)
            return False
        if address is None:
            last_error = f"no {family.value} address"
            return False
        found.append(address)
        return True

    if not deadline.run(attempt):
        raise StartupError(
            f"leader address {name!r} did not resolve within {deadline.seconds:g}s: {last_error}"
        )
    return found[0]


def worker_names(leader_address: str, nnodes: int) -> list[str]:
    """LeaderWorkerSet worker pod names: the leader's pod name + `-<index>`, same subdomain."""
    pod, dot, rest = leader_address.partition(".")
    return [f"{pod}-{index}{dot}{rest}" for index in range(1, nnodes)]


def wait_for_workers(
    names: Sequence[str],
    family: IpFamily,
    deadline: Deadline,
    resolver: Resolver = system_resolver,
    log: Callable[[str], None] = print,
) -> None:
    """Hold the leader back until every worker's name resolves (it is scheduled)."""
    missing = list(names)

    def attempt() -> bool:
        for name in list(missing):
            try:
                if pick_address(resolver(name, family), family) is not None:
                    missing.remove(name)
                    log(f"worker {name} is scheduled")
            except OSError:
                pass
        return not missing

    if not deadline.run(attempt, interval=2.0):
        raise StartupError(
            f"workers not scheduled within {deadline.seconds:g}s: {', '.join(missing)} "
            "did not resolve; check that the group's pods are not Pending"
        )


def host_port(address: str, port: int) -> str:
    """`v4:port`, or `[v6]:port` (SGLang rejects a bare `fd00::1:5002`)."""
    return f"[{address}]:{port}" if family_of(address) is IpFamily.IPV6 else f"{address}:{port}"


def auto_listen_host(pod_ip: str | None) -> str:
    """Where a server should listen when the plan says `auto`: all addresses of the pod's
    family (`::` also takes IPv4 where the kernel allows it), or of what this host has."""
    if pod_ip:
        return "::" if family_of(pod_ip) is IpFamily.IPV6 else "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return "0.0.0.0"  # IPv6 is disabled here
    return "::"
