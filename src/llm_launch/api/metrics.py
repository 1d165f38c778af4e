"""The control plane's own Prometheus metrics: `GET /metrics` on `serve` and on a gateway.

What an operator needs to see that the control plane keeps up, none of it per owner:

- the reconciler (`serve` only; on Kubernetes only the replica holding the Lease runs
  one): how long each pass over every endpoint takes, passes that failed, when the last
  pass succeeded (alert when that stops moving), and whether this replica reconciles;
- the routing table (every process that routes inference): how many endpoints it holds
  by status and how long ago it last refreshed from the database.

No label names an owner or an endpoint, so the page needs no API key and tells a caller
nothing about anybody's endpoints beyond counts, as the forwarder's `/metrics` does. Each
app gets its own registry (several apps can live in one test process). The reconciler
reports through `services.reconciler.PassObserver`, so no service imports this library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import RoutingTable

__all__ = ["CONTENT_TYPE", "ControlPlaneMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A pass over a few endpoints takes milliseconds; over 10,000, seconds to tens of seconds
# (bench/reconcile_pass.py).
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ControlPlaneMetrics:
    """The registry of one app; also the reconciler's `PassObserver`."""

    def __init__(self, table: RoutingTable, *, reconciler: bool) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_RoutingTableCollector(table))
        if not reconciler:
            return
        registry = self.registry
        self._pass_seconds = Histogram(
            "llm_launch_reconcile_pass_seconds",
            "How long a reconcile pass (every endpoint visited once) took",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self._failed = Counter(
            "llm_launch_reconcile_pass_failures",
            "Reconcile passes that failed as a whole (the database unreachable, say)",
            registry=registry,
        )
        self._last_success = Gauge(
            "llm_launch_reconcile_last_success_timestamp_seconds",
            "Unix time the last successful pass ended (0: none yet in this process)",
            registry=registry,
        )
        self._leading = Gauge(
            "llm_launch_reconciler_leading",
            "1 while this process reconciles (on Kubernetes: while it holds the Lease)",
            registry=registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # --- services.reconciler.PassObserver -----------------------------------------------

    def leading(self, yes: bool) -> None:
        self._leading.set(1 if yes else 0)

    def passed(self, seconds: float, *, failed: bool) -> None:
        self._pass_seconds.observe(seconds)
        if failed:
            self._failed.inc()
        else:
            self._last_success.set(time.time())


class _RoutingTableCollector(Collector):
    """Read at each scrape: nothing on the request path counts anything."""

    def __init__(self, table: RoutingTable) -> None:
        self._table = table

    def collect(self) -> Iterator[Metric]:
        endpoints = GaugeMetricFamily(
            "llm_launch_endpoints",
            "Endpoints in this process's routing table by status (those being deleted "
            "have left it)",
            labels=["status"],
        )
        counts = self._table.count_by_status()
        for status in EndpointStatus:
            if status is not EndpointStatus.DELETE_IN_PROGRESS:
                endpoints.add_metric([status.value], counts.get(status, 0))
        yield endpoints
        yield GaugeMetricFamily(
            "llm_launch_routing_table_age_seconds",
            "Seconds since the routing table last completed a refresh from the database",
            value=time.monotonic() - self._table.refreshed_at,
        )
