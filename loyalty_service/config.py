"""Loyalty settings, read once from the environment at start."""

from __future__ import annotations

from common.broker import BrokerSettings
from common.config import BaseServiceSettings, HostPort, PostgresUrl


class LoyaltySettings(BaseServiceSettings, BrokerSettings):
    loyalty_database_url: PostgresUrl = "postgresql://postgres@127.0.0.1:5432/loyalty"
    loyalty_grpc_addr: HostPort = "127.0.0.1:50052"
    # Prometheus /metrics; empty turns it off.
    loyalty_metrics_addr: str = "127.0.0.1:9102"
    # Where the JWT public keys come from (AuthService.GetJwks).
    auth_grpc_addr: HostPort = "127.0.0.1:50051"
    # A PENDING purchase older than this expires and gives its use back.
    purchase_pending_ttl_seconds: float = 30 * 60
    sweeper_interval_seconds: float = 10.0
    loyalty_db_pool_size: int = 20
    # Seconds before each retry of a user event that failed (JSON list); then the dead letters.
    consumer_retry_delays: list[float] = [1.0, 5.0, 30.0]
    # An admin account `python -m loyalty_service resync` signs in with.
    loyalty_resync_email: str = ""
    loyalty_resync_password: str = ""
    # Loyalty's own events (purchase.completed, purchase.cancelled, referral.rewarded), sent
    # from its outbox: the topic exchange, rows per batch, how long sent rows are kept.
    promo_events_exchange: str = "loyalty.promo.events"
    outbox_batch_size: int = 500
    outbox_retention_seconds: float = 7 * 24 * 3600
    outbox_prune_interval_seconds: float = 600
