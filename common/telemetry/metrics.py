"""Prometheus metrics of every process, defined in one place; the code only counts."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# gRPC servers (auth, loyalty).
RPCS = Counter("rpc_requests_total", "gRPC calls served", ["method", "code"])
RPC_LATENCY = Histogram(
    "rpc_duration_seconds", "gRPC call latency", ["method"], buckets=_LATENCY_BUCKETS
)

# Promo codes (loyalty).
PROMO_USES = Counter("promo_uses_total", "Uses taken (PENDING purchases created)")
PROMO_CONFIRMS = Counter("promo_confirms_total", "Purchases confirmed")
PROMO_CANCELS = Counter("promo_cancels_total", "Purchases cancelled, uses given back")
PROMO_EXPIRIES = Counter("promo_expiries_total", "PENDING purchases expired, uses given back")
PROMO_REFUNDS = Counter("promo_refunds_total", "Completed purchases refunded")
PROMO_REJECTIONS = Counter("promo_rejections_total", "Rejected attempts", ["reason"])
REFERRAL_OUTCOMES = Counter(
    "referral_outcomes_total", "Confirmed referrals", ["outcome"]
)  # outcome: ISSUED, or the reason the reward was withheld

# The outbox (auth; loyalty counts what it published too).
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows not yet published")
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_age_seconds", "Age of the oldest unpublished row")
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events published and confirmed")

# The user-events consumer (loyalty).
CONSUMER_DELIVERIES = Counter(
    "consumer_deliveries_total", "User events received", ["outcome"]
)  # outcome: applied, stale, retried, dead_lettered
CONSUMER_RETRIES = Counter("consumer_retries_total", "User events sent to a retry queue")
CONSUMER_DEAD = Counter("consumer_dead_lettered_total", "User events parked as dead letters")

# The gateway.
HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP latency", ["route"], buckets=_LATENCY_BUCKETS
)


# What each process owns: its /metrics lists these and nothing of the other processes'.
# (All are defined in the default registry too, which tests read in-process.)
_RUNTIME: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
AUTH: tuple[Collector, ...] = (
    *_RUNTIME,
    RPCS,
    RPC_LATENCY,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISHED,
)
LOYALTY: tuple[Collector, ...] = (
    *_RUNTIME,
    RPCS,
    RPC_LATENCY,
    PROMO_USES,
    PROMO_CONFIRMS,
    PROMO_CANCELS,
    PROMO_EXPIRIES,
    PROMO_REFUNDS,
    PROMO_REJECTIONS,
    REFERRAL_OUTCOMES,
    OUTBOX_PUBLISHED,
    CONSUMER_DELIVERIES,
    CONSUMER_RETRIES,
    CONSUMER_DEAD,
)
GATEWAY: tuple[Collector, ...] = (*_RUNTIME, HTTP_REQUESTS, HTTP_LATENCY)


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
