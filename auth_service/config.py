"""Auth settings, read once from the environment at start."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, PositiveInt

from common.access.trust import TrustedNetworks
from common.config import BaseServiceSettings, DirectPostgresUrl, HostPort, Pooler, PostgresUrl
from common.messaging.broker import BrokerSettings
from common.processes import supervisor as workers

# The development default of AUTH_EMAIL_HASH_KEY: known to everyone who reads this file, so an
# operator replaces it (docs/privacy.md); auth warns at start while it is in use.
DEVELOPMENT_EMAIL_HASH_KEY = "development-only-email-hash-key"


class AuthSettings(BaseServiceSettings, BrokerSettings):
    auth_database_url: PostgresUrl = "postgresql://postgres@127.0.0.1:5432/auth"
    # `pgbouncer` when AUTH_DATABASE_URL is PgBouncer in transaction mode (docs/operations.md).
    auth_database_pooler: Pooler = ""
    # PostgreSQL itself, for what a transaction-mode pooler cannot carry: `migrate` (a session
    # advisory lock) and the outbox relay's LISTEN. Empty: AUTH_DATABASE_URL.
    auth_database_direct_url: DirectPostgresUrl = ""

    @property
    def auth_direct_url(self) -> str:
        return self.auth_database_direct_url or self.auth_database_url

    auth_grpc_addr: HostPort = "127.0.0.1:50051"
    # Prometheus /metrics; empty turns it off.
    auth_metrics_addr: str = "127.0.0.1:9101"
    # Ed25519 private key (PEM), inline or in a file; with neither, a development key is
    # generated at first start and kept in the database so restarts and replicas agree.
    auth_jwt_private_key: str = ""
    auth_jwt_private_key_file: str = ""
    auth_access_ttl_seconds: int = 900
    # How often each process reloads the signing keys (and reports which it publishes);
    # `rotate-key` waits for every process to publish the next key, so this bounds a rotation.
    auth_key_refresh_seconds: PositiveFloat = 1.0
    auth_refresh_ttl_seconds: int = 30 * 24 * 3600
    # How often auth checks that Redis still holds the revoked sessions (and rebuilds them).
    auth_revocation_check_seconds: float = 1.0
    # Which peers' x-forwarded-for metadata is believed (the gateways' addresses or CIDR
    # ranges, comma-separated); empty: nobody's, every caller is its own gRPC peer.
    auth_trusted_peers: TrustedNetworks = ""
    # The key the gateway signs the client's address with and the servers check it by
    # (common/access/client_address.py); the same on the gateway and every auth and loyalty
    # replica. Empty: off (`make run` makes a random one per run when it is unset).
    client_address_key: str = ""
    # Failed logins allowed per window (refilled smoothly over it): per (email, client
    # address), per email whatever the address, and per client address whatever the email.
    auth_login_limit_per_email_address: PositiveInt = 10
    auth_login_limit_per_email: PositiveInt = 50
    auth_login_limit_per_address: PositiveInt = 100
    auth_login_window_seconds: PositiveFloat = 900
    # Registrations allowed per client address per window.
    auth_register_limit_per_address: PositiveInt = 10
    auth_register_window_seconds: PositiveFloat = 3600
    # How long a service account's previous client secret keeps working after a rotation
    # (so its callers can be moved to the new one); 0 ends it at once, 30 days at most.
    auth_secret_rotation_overlap_seconds: float = Field(default=86400, ge=0, le=30 * 86400)
    # "development" generates a signing key when none is configured; anything else refuses to.
    environment: str = "development"
    auth_password_min_length: int = 8
    auth_admin_password: str = ""
    # The service's total over its workers.
    auth_db_pool_size: int = 20
    # Worker processes behind the one port (common.processes.supervisor).
    auth_workers: PositiveInt = workers.DEFAULT_COUNT
    # Outbox relay: rows per published batch, how long sent rows are kept, how often pruned.
    outbox_batch_size: int = 500
    outbox_retention_seconds: float = 7 * 24 * 3600
    outbox_prune_interval_seconds: float = 600
    # Personal data (docs/privacy.md). The key of the keyed hash kept of a deleted account's
    # email (at least 16 characters; a secret, like the signing key).
    auth_email_hash_key: Annotated[str, Field(min_length=16)] = DEVELOPMENT_EMAIL_HASH_KEY
    # How long the audit trail, ended sessions (with their refresh tokens) and the keyed email
    # hashes of deleted accounts are kept; how often the retention worker runs.
    auth_audit_retention_days: PositiveInt = 365
    auth_session_retention_days: PositiveInt = 30
    auth_erased_email_hash_retention_days: PositiveInt = 365
    auth_retention_interval_seconds: PositiveFloat = 3600
