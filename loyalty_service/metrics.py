"""Loyalty's Prometheus metrics, every family under `loyalty_`; the code only counts."""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.registry import Collector

from common.telemetry.metrics import RUNTIME, outbox_metrics, rpc_metrics

RPC = rpc_metrics("loyalty")

# Promo codes.
PROMO_USES = Counter("loyalty_promo_uses_total", "Uses taken (PENDING purchases created)")
PROMO_CONFIRMS = Counter("loyalty_promo_confirms_total", "Purchases confirmed")
PROMO_CANCELS = Counter("loyalty_promo_cancels_total", "Purchases cancelled, uses given back")
PROMO_REFUNDS = Counter("loyalty_promo_refunds_total", "Completed purchases refunded")
PROMO_EXPIRIES = Counter(
    "loyalty_promo_expiries_total", "PENDING purchases expired, uses given back"
)
PROMO_REJECTIONS = Counter("loyalty_promo_rejections_total", "Rejected attempts", ["reason"])
REFERRAL_OUTCOMES = Counter(
    "loyalty_referral_outcomes_total", "Confirmed referrals", ["outcome"]
)  # outcome: ISSUED, or the reason the reward was withheld

OUTBOX = outbox_metrics("loyalty")  # loyalty's own events

# The user-events consumer.
CONSUMER_DELIVERIES = Counter(
    "loyalty_consumer_deliveries_total", "User events received", ["outcome"]
)  # outcome: applied, stale, retried, dead_lettered
CONSUMER_RETRIES = Counter("loyalty_consumer_retries_total", "User events sent to a retry queue")
CONSUMER_DEAD = Counter(
    "loyalty_consumer_dead_lettered_total", "User events parked as dead letters"
)

COLLECTORS: tuple[Collector, ...] = (
    *RUNTIME,
    *RPC.collectors,
    PROMO_USES,
    PROMO_CONFIRMS,
    PROMO_CANCELS,
    PROMO_REFUNDS,
    PROMO_EXPIRIES,
    PROMO_REJECTIONS,
    REFERRAL_OUTCOMES,
    *OUTBOX.collectors,
    CONSUMER_DELIVERIES,
    CONSUMER_RETRIES,
    CONSUMER_DEAD,
)
