"""Auth settings, read once from the environment at start."""

from __future__ import annotations

from common.broker import BrokerSettings
from common.config import BaseServiceSettings, HostPort, PostgresUrl


class AuthSettings(BaseServiceSettings, BrokerSettings):
    auth_database_url: PostgresUrl = "postgresql://postgres@127.0.0.1:5432/auth"
    auth_grpc_addr: HostPort = "127.0.0.1:50051"
    # Prometheus /metrics; empty turns it off.
    auth_metrics_addr: str = "127.0.0.1:9101"
    # Ed25519 private key (PEM), inline or in a file; with neither, a development key is
    # generated at first start and kept in the database so restarts and replicas agree.
    auth_jwt_private_key: str = ""
    auth_jwt_private_key_file: str = ""
    auth_access_ttl_seconds: int = 900
    auth_refresh_ttl_seconds: int = 30 * 24 * 3600
    # How often auth checks that Redis still holds the revoked sessions (and rebuilds them).
    auth_revocation_check_seconds: float = 1.0
    # Login attempts allowed per window, per email and per client address.
    auth_login_limit_per_email: int = 10
    auth_login_limit_per_address: int = 100
    auth_login_window_seconds: int = 60
    auth_password_min_length: int = 8
    auth_admin_password: str = ""
    auth_db_pool_size: int = 20
    # Outbox relay: rows per published batch, how long sent rows are kept, how often pruned.
    outbox_batch_size: int = 500
    outbox_retention_seconds: float = 7 * 24 * 3600
    outbox_prune_interval_seconds: float = 600
