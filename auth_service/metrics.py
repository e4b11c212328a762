"""Auth's Prometheus metrics, every family under `auth_`; the code only counts."""

from __future__ import annotations

from prometheus_client.registry import Collector

from common.telemetry.metrics import RUNTIME, outbox_metrics, rpc_metrics

RPC = rpc_metrics("auth")
OUTBOX = outbox_metrics("auth")  # the user events' outbox

# What auth's /metrics lists (all are in the default registry too, which tests read).
COLLECTORS: tuple[Collector, ...] = (*RUNTIME, *RPC.collectors, *OUTBOX.collectors)
