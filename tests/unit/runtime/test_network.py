"""Leader resolution, worker names and the wait for workers, with an injected resolver."""

from __future__ import annotations

import pytest

from llm_launch.engines.plan import IpFamily
from llm_launch.runtime.startup import network
from llm_launch.runtime.startup.network import (
    Deadline,
    StartupError,
    auto_listen_host,
    host_port,
    resolve_one,
    wait_for_workers,
    with_cluster_domain,
    worker_names,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def deadline(seconds: float) -> Deadline:
    clock = FakeClock()
    return Deadline(seconds, clock=clock.time, sleep=clock.sleep)


def table(entries: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(name: str, family: IpFamily) -> list[str]:
        if name not in entries:
            raise OSError(-2, "Name or service not known")
        return entries[name]

    return resolve


def test_the_preferred_family_is_picked_from_a_dual_stack_answer() -> None:
    resolver = table({"leader": ["10.0.0.1", "fdab::1"]})
    assert resolve_one("leader", IpFamily.IPV6, deadline(5), resolver) == "fdab::1"
    assert resolve_one("leader", IpFamily.IPV4, deadline(5), resolver) == "10.0.0.1"
    assert resolve_one("leader", IpFamily.AUTO, deadline(5), resolver) == "10.0.0.1"


def test_resolution_retries_until_the_name_appears() -> None:
    calls = []

    def flaky(name: str, family: IpFamily) -> list[str]:
        calls.append(name)
        if len(calls) < 3:
            raise OSError(-2, "Name or service not known")
        return ["fdab::1"]

    assert resolve_one("leader", IpFamily.IPV6, deadline(10), flaky) == "fdab::1"
    assert len(calls) == 3


def test_a_name_that_never_resolves_fails_with_a_one_line_reason() -> None:
    with pytest.raises(StartupError, match="'leader' did not resolve within 5s") as error:
        resolve_one("leader", IpFamily.IPV6, deadline(5), table({}))
    assert "\n" not in str(error.value)


def test_a_name_without_an_address_of_the_family_fails() -> None:
    with pytest.raises(StartupError, match="no ipv6 address"):
        resolve_one("leader", IpFamily.IPV6, deadline(2), table({"leader": ["10.0.0.1"]}))


def test_worker_names_follow_the_leaderworkerset_pattern() -> None:
    assert worker_names("llm-r1-0.llm-r1.default", 3) == [
        "llm-r1-0-1.llm-r1.default",
        "llm-r1-0-2.llm-r1.default",
    ]


def test_the_cluster_domain_is_appended_once_and_never_to_an_ip() -> None:
    assert with_cluster_domain("a.b.ns", "svc.cluster.local") == "a.b.ns.svc.cluster.local"
    assert with_cluster_domain("a.b.ns.svc.cluster.local", "svc.cluster.local").count("svc") == 1
    assert with_cluster_domain("fdab::1", "svc.cluster.local") == "fdab::1"


def test_the_wait_names_the_workers_that_never_appeared() -> None:
    resolver = table({"w-1": ["fdab::2"]})
    with pytest.raises(StartupError, match="w-2, w-3 did not resolve"):
        wait_for_workers(["w-1", "w-2", "w-3"], IpFamily.IPV6, deadline(10), resolver, log=print)


def test_the_wait_ends_as_soon_as_every_worker_resolves() -> None:
    seen: list[str] = []
    wait_for_workers(
        ["w-1"], IpFamily.AUTO, deadline(10), table({"w-1": ["10.0.0.2"]}), seen.append
    )
    assert seen == ["worker w-1 is scheduled"]


@pytest.mark.parametrize(
    ("address", "expected"), [("fdab::1", "[fdab::1]:5002"), ("10.0.0.1", "10.0.0.1:5002")]
)
def test_host_port_brackets_ipv6_only(address: str, expected: str) -> None:
    assert host_port(address, 5002) == expected


@pytest.mark.parametrize(("pod_ip", "host"), [("fdab:1::2", "::"), ("10.0.0.2", "0.0.0.0")])
def test_auto_listens_on_every_address_of_the_pods_family(pod_ip: str, host: str) -> None:
    assert auto_listen_host(pod_ip) == host


def test_auto_without_a_pod_ip_falls_back_to_ipv4_where_ipv6_is_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoIPv6:
        def __init__(self, *args: object) -> None:
            pass

        def __enter__(self) -> NoIPv6:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def bind(self, address: object) -> None:
            raise OSError(97, "Address family not supported by protocol")

    monkeypatch.setattr(network.socket, "socket", NoIPv6)
    assert auto_listen_host(None) == "0.0.0.0"
