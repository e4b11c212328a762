"""Loyalty settings, read once from the environment at start."""

from __future__ import annotations

from common.config import BaseServiceSettings, HostPort, PostgresUrl


class LoyaltySettings(BaseServiceSettings):
    loyalty_database_url: PostgresUrl = "postgresql://postgres@127.0.0.1:5432/loyalty"
    loyalty_grpc_addr: HostPort = "127.0.0.1:50052"
    # Where the JWT public keys come from (AuthService.GetJwks).
    auth_grpc_addr: HostPort = "127.0.0.1:50051"
    # A PENDING purchase older than this expires and gives its use back.
    purchase_pending_ttl_seconds: float = 30 * 60
    sweeper_interval_seconds: float = 10.0
    loyalty_db_pool_size: int = 20
