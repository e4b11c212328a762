"""Each process's /metrics lists its own metrics and none of the other processes'."""

from __future__ import annotations

from prometheus_client import generate_latest

from common.telemetry import metrics


def _families(collectors: tuple[object, ...]) -> set[str]:
    text = generate_latest(metrics.registry_of(collectors)).decode()  # type: ignore[arg-type]
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def test_each_process_exports_only_its_own_families() -> None:
    auth, loyalty, gateway = (
        _families(metrics.AUTH),
        _families(metrics.LOYALTY),
        _families(metrics.GATEWAY),
    )
    assert {"rpc_requests_total", "outbox_backlog"} <= auth
    assert not {"promo_uses_total", "consumer_deliveries_total", "http_requests_total"} & auth
    assert {"rpc_requests_total", "promo_uses_total", "consumer_deliveries_total"} <= loyalty
    assert not {"outbox_backlog", "http_requests_total"} & loyalty
    assert {"http_requests_total", "process_cpu_seconds_total"} <= gateway
    assert not {"rpc_requests_total", "promo_uses_total", "outbox_backlog"} & gateway
