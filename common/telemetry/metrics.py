"""The shared machinery of Prometheus metrics: the families every gRPC server has (made per
service, each under its service's prefix), registries and the /metrics server. The metrics a
service owns are defined beside it: auth_service/metrics.py, loyalty_service/metrics.py,
gateway/metrics.py.

Naming, after Prometheus's conventions: every family of ours starts with its service's name
(`auth_`, `loyalty_`, `gateway_`), counters end in `_total`, units are base units in the name
(`_seconds`). The client library's standard runtime families (`process_*`, `python_*`) keep
their standard names: dashboards and alerts tell the services apart by the `job` label. No
`_created` series: they double the series count and nobody here reads them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0)
RUNTIME: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


@dataclass(frozen=True)
class RpcMetrics:
    """What a gRPC server counts of every call (common/rpc/grpc_server.py)."""

    requests: Counter
    latency: Histogram
    # Calls refused at the door for load (common/rpc/admission.py), before any of their work.
    overload_refusals: Counter

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return (self.requests, self.latency, self.overload_refusals)


def rpc_metrics(prefix: str, registry: CollectorRegistry | None = REGISTRY) -> RpcMetrics:
    """`<prefix>_rpc_requests_total{method,code}` and `<prefix>_rpc_duration_seconds{method}`.
    `registry=None` makes them outside every registry (a test's throwaway server)."""
    return RpcMetrics(
        Counter(
            f"{prefix}_rpc_requests_total", "gRPC calls served", ["method", "code"],
            registry=registry,
        ),
        Histogram(
            f"{prefix}_rpc_duration_seconds", "gRPC call latency", ["method"],
            buckets=LATENCY_BUCKETS, registry=registry,
        ),
        Counter(
            f"{prefix}_rpc_overload_refusals_total",
            "gRPC calls refused because the server was at its concurrency limit", ["method"],
            registry=registry,
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class OutboxMetrics:
    """A transactional outbox's relay: what it published, what waits, and for how long."""

    published: Counter
    backlog: Gauge
    oldest_age: Gauge

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return (self.published, self.backlog, self.oldest_age)


def outbox_metrics(prefix: str) -> OutboxMetrics:
    return OutboxMetrics(
        Counter(f"{prefix}_outbox_published_total", "Events published and confirmed"),
        Gauge(f"{prefix}_outbox_backlog", "Outbox rows not yet published"),
        Gauge(f"{prefix}_outbox_oldest_age_seconds", "Age of the oldest unpublished row"),
    )


def registry_of(collectors: Iterable[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(address: str, collectors: Iterable[Collector]) -> None:
    """Serves /metrics at HOST:PORT from a daemon thread (prometheus-client's own server),
    listing only `collectors`; an empty address turns it off."""
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host, registry=registry_of(collectors))
