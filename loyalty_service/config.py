"""Loyalty settings, read once from the environment at start."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, PositiveInt

from common.access.trust import TrustedNetworks
from common.config import (
    BaseServiceSettings,
    DirectPostgresUrl,
    GrpcTarget,
    HostPort,
    Pooler,
    PostgresUrl,
)
from common.messaging.broker import BrokerSettings
from common.processes import supervisor as workers


class LoyaltySettings(BaseServiceSettings, BrokerSettings):
    loyalty_database_url: PostgresUrl = "postgresql://postgres@127.0.0.1:5432/loyalty"
    # `pgbouncer` when LOYALTY_DATABASE_URL is PgBouncer in transaction mode (docs/operations.md).
    loyalty_database_pooler: Pooler = ""
    # PostgreSQL itself, for `migrate` (a session advisory lock) and the outbox relay's LISTEN.
    # Empty: LOYALTY_DATABASE_URL.
    loyalty_database_direct_url: DirectPostgresUrl = ""

    @property
    def loyalty_direct_url(self) -> str:
        return self.loyalty_database_direct_url or self.loyalty_database_url

    loyalty_grpc_addr: HostPort = "127.0.0.1:50052"
    # Behind the edge (common.processes.edge; `make run` sets it): each worker also listens on
    # the unix socket PREFIX + its index + ".sock", which the edge forwards calls to. Empty: off.
    loyalty_edge_sockets: str = ""
    # Prometheus /metrics; empty turns it off.
    loyalty_metrics_addr: str = "127.0.0.1:9102"
    # Where the JWT public keys come from (AuthService.GetJwks): a gRPC target, HOST:PORT or
    # several auth replicas (`ipv4:A:P,B:P`, `dns:///auth:50051`).
    auth_grpc_addr: GrpcTarget = "127.0.0.1:50051"
    # A PENDING purchase older than this expires and gives its use back.
    purchase_pending_ttl_seconds: float = 30 * 60
    sweeper_interval_seconds: float = 10.0
    # The service's total over its workers.
    loyalty_db_pool_size: int = 20
    # Worker processes behind the one port (common.processes.supervisor).
    loyalty_workers: PositiveInt = workers.DEFAULT_COUNT
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
    # Which peers' x-forwarded-for metadata is believed (the gateways' addresses or CIDR
    # ranges, comma-separated); empty: nobody's, every caller is its own gRPC peer.
    loyalty_trusted_peers: TrustedNetworks = ""
    # The key the gateway signs the client's address with and the servers check it by
    # (common/access/client_address.py); the same on the gateway and every auth and loyalty
    # replica. Empty: off (`make run` makes a random one per run when it is unset).
    client_address_key: str = ""
    # Promo codes that did not work (no such code, not open to the caller) allowed per
    # window, refilled smoothly over it: per user, and per client address.
    loyalty_promo_failures_per_user: PositiveInt = 10
    loyalty_promo_failures_per_address: PositiveInt = 30
    loyalty_promo_failure_window_seconds: PositiveFloat = 600
    # Keys the HMAC-SHA256 of client addresses kept for the referral same-address signal
    # (docs/loyalty.md): the tables hold only these hashes. The default is for development;
    # set a secret of at least 16 characters, the same on every replica (a new key makes
    # earlier hashes match nothing, so it only loses signals for codes made before).
    loyalty_address_hash_key: Annotated[str, Field(min_length=16)] = (
        "development address-hash key: set LOYALTY_ADDRESS_HASH_KEY"
    )
    # Individual rejection rows are kept this long (the counts by reason, for good).
    loyalty_rejection_retention_seconds: PositiveFloat = 30 * 24 * 3600
    # Personal data (docs/privacy.md): how long the audit trail and the keyed client-address
    # hashes of referrals are kept, and how often the retention worker runs.
    loyalty_audit_retention_days: PositiveInt = 365
    loyalty_referral_address_retention_days: PositiveInt = 90
    loyalty_retention_interval_seconds: PositiveFloat = 3600
