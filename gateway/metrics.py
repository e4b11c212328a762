"""The gateway's Prometheus metrics, every family under `gateway_`; the code only counts."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.registry import Collector

from common.telemetry.metrics import LATENCY_BUCKETS, RUNTIME

HTTP_REQUESTS = Counter("gateway_http_requests_total", "HTTP requests", ["route", "status"])
HTTP_LATENCY = Histogram(
    "gateway_http_request_duration_seconds", "HTTP latency", ["route"], buckets=LATENCY_BUCKETS
)

COLLECTORS: tuple[Collector, ...] = (*RUNTIME, HTTP_REQUESTS, HTTP_LATENCY)
