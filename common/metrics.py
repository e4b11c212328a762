"""Prometheus metrics of every process, defined in one place; the code only counts."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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
PROMO_REJECTIONS = Counter("promo_rejections_total", "Rejected attempts", ["reason"])

# The outbox (auth).
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


def serve(address: str) -> None:
    """Serves /metrics at HOST:PORT from a daemon thread (prometheus-client's own server);
    an empty address turns it off."""
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host)
