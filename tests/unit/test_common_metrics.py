"""Each process's /metrics lists its own metrics and none of the other processes', every family
of ours under its service's prefix, and no `_created` series."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from auth_service import metrics as auth_metrics
from common.telemetry import metrics
from gateway import metrics as gateway_metrics
from loyalty_service import metrics as loyalty_metrics

STANDARD = ("process_", "python_")  # the client library's runtime families, named by convention


def _text(collectors: tuple[Collector, ...]) -> str:
    return generate_latest(metrics.registry_of(collectors)).decode()


def _families(collectors: tuple[Collector, ...]) -> set[str]:
    text = _text(collectors)
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def test_each_process_exports_only_its_own_families() -> None:
    auth, loyalty, gateway = (
        _families(auth_metrics.COLLECTORS),
        _families(loyalty_metrics.COLLECTORS),
        _families(gateway_metrics.COLLECTORS),
    )
    assert {"auth_rpc_requests_total", "auth_outbox_backlog"} <= auth
    assert {
        "loyalty_rpc_requests_total",
        "loyalty_promo_uses_total",
        "loyalty_consumer_deliveries_total",
        "loyalty_outbox_backlog",
        "loyalty_outbox_oldest_age_seconds",
    } <= loyalty
    assert {"gateway_http_requests_total", "process_cpu_seconds_total"} <= gateway


def test_every_family_carries_its_services_prefix() -> None:
    for prefix, collectors in (
        ("auth_", auth_metrics.COLLECTORS),
        ("loyalty_", loyalty_metrics.COLLECTORS),
        ("gateway_", gateway_metrics.COLLECTORS),
    ):
        ours = {f for f in _families(collectors) if not f.startswith(STANDARD)}
        assert ours and all(f.startswith(prefix) for f in ours), (prefix, ours)


def test_no_created_series() -> None:
    loyalty_metrics.PROMO_USES.inc()
    loyalty_metrics.RPC.requests.labels("/m", "OK").inc()
    loyalty_metrics.RPC.latency.labels("/m").observe(0.01)
    assert "_created" not in _text(loyalty_metrics.COLLECTORS)
