"""Composition root of the auth process: settings → pools → use cases → server and loops."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from auth_service import metrics
from auth_service.api.servicers import AuthServicer, UserAdminServicer
from auth_service.config import DEVELOPMENT_EMAIL_HASH_KEY, AuthSettings
from auth_service.domain.reasons import DOMAIN
from auth_service.jobs.outbox_relay import OutboxRelay, measure_backlog, prune_sent
from auth_service.jobs.retention import RetentionPeriods, run_retention
from auth_service.jobs.revocation_keeper import RevocationKeeper
from auth_service.keys import configured_pem, new_private_pem
from auth_service.ratelimit import LoginLimits, LoginThrottle, RegistrationThrottle
from auth_service.store.keys import PgSigningKeys
from auth_service.store.service_accounts import PgServiceAccounts
from auth_service.store.unit_of_work import PgUnitOfWork
from auth_service.token_issuer import TokenIssuer
from auth_service.use_cases.accounts import Accounts
from auth_service.use_cases.privacy import Privacy
from auth_service.use_cases.service_accounts import ServiceAccounts
from auth_service.use_cases.sessions import Sessions
from auth_service.use_cases.signing_keys import SigningKeys
from common.access.access_tokens import TokenVerifier
from common.access.client_address import AddressRule, key_bytes
from common.access.revocation import RevocationList
from common.access.revocation_watch import RevocationWatch
from common.access.throttle import Limit, Throttle
from common.access.trust import parse_networks
from common.messaging.broker import BrokerHealth
from common.processes import supervisor as workers
from common.rpc.admission import admission_settings
from common.rpc.audit import AuditPolicy, CallAudit
from common.rpc.grpc_server import GrpcServer
from common.rpc.page_tokens import PageTokens
from common.storage import redis_client
from common.storage.audit_events import PgAuditEvents
from common.storage.db import Pool, create_pool, retrying
from common.telemetry.logs import get_logger
from protogen.loyalty.auth.v1 import auth_pb2_grpc

SERVICE_NAMES = ["loyalty.auth.v1.AuthService", "loyalty.auth.v1.UserAdminService"]
# The audit trail records every admin method (they all read or change someone's account);
# users' own calls are not recorded.
AUDIT_POLICY = AuditPolicy(frozenset({"loyalty.auth.v1.UserAdminService"}))
Loop = Callable[[], Coroutine[Any, Any, None]]
DEVELOPMENT = "development"
log = get_logger("auth")


@dataclass
class AuthApp:
    settings: AuthSettings
    pool: Pool
    redis: redis.Redis
    accounts: Accounts
    service_accounts: ServiceAccounts
    server: GrpcServer
    keeper: RevocationKeeper
    keys: SigningKeys
    # Background loops run beside the server and stop with it.
    loops: list[Loop] = field(default_factory=list)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


class NoSigningKey(SystemExit):
    """Outside development, auth does not start without a configured signing key."""


def _configured(settings: AuthSettings) -> bool:
    return bool(settings.auth_jwt_private_key or settings.auth_jwt_private_key_file)


async def seed_pem(settings: AuthSettings, pool: Pool) -> str:
    """The key the first start puts in the table: the configured one, or in development the
    generated key kept from before keys had states (so its tokens stay valid)."""
    pem = configured_pem(settings.auth_jwt_private_key, settings.auth_jwt_private_key_file)
    if pem is not None:
        return pem
    if settings.environment != DEVELOPMENT:
        raise NoSigningKey(
            f"ENVIRONMENT={settings.environment}: set AUTH_JWT_PRIVATE_KEY or"
            " AUTH_JWT_PRIVATE_KEY_FILE (an Ed25519 private key, PEM); only development"
            " runs on a generated key"
        )
    # A warning on purpose: outside development this is refused, and a clean start of a
    # configured system logs none.
    log.warning(
        "development_signing_key",
        detail="no key configured: a generated key kept in the auth database seeds the keys;"
        " set AUTH_JWT_PRIVATE_KEY(_FILE) outside development",
    )
    return await PgSigningKeys(pool).dev_key_pem(new_private_pem())


def replica_name() -> str:
    """One name per process: each worker publishes (and is waited for) on its own."""
    return f"{socket.gethostname()}:{os.getpid()}"


def signing_keys(settings: AuthSettings, pool: Pool, issuer: TokenIssuer | None) -> SigningKeys:
    return SigningKeys(
        PgSigningKeys(pool),
        replica_name(),
        settings.auth_access_ttl_seconds,
        settings.auth_key_refresh_seconds,
        issuer.use if issuer is not None else lambda ring: None,
    )


async def load_issuer(settings: AuthSettings, pool: Pool) -> tuple[TokenIssuer, SigningKeys]:
    keys = signing_keys(settings, pool, None)
    issuer = TokenIssuer(
        await keys.start(await seed_pem(settings, pool), configured=_configured(settings)),
        settings.auth_access_ttl_seconds,
    )
    return issuer, signing_keys(settings, pool, issuer)


def login_throttle(settings: AuthSettings, throttle: Throttle) -> LoginThrottle:
    """Failed logins and failed client-credentials grants count in the same buckets."""
    window = settings.auth_login_window_seconds
    logins = LoginLimits(
        Limit(settings.auth_login_limit_per_email_address, window),
        Limit(settings.auth_login_limit_per_email, window),
        Limit(settings.auth_login_limit_per_address, window),
    )
    return LoginThrottle(throttle, logins)


def build_service_accounts(
    settings: AuthSettings,
    pool: Pool,
    client: redis.Redis,
    issuer: TokenIssuer,
    revocations: RevocationList,
) -> ServiceAccounts:
    return ServiceAccounts(
        PgServiceAccounts(pool),
        issuer,
        revocations,
        login_throttle(settings, Throttle(client, settings.redis_key_prefix)),
        settings.auth_secret_rotation_overlap_seconds,
    )


def build_use_cases(
    settings: AuthSettings,
    pool: Pool,
    client: redis.Redis,
    issuer: TokenIssuer,
    revocations: RevocationList,
) -> tuple[Accounts, Sessions]:
    store = PgUnitOfWork(pool)
    throttle = Throttle(client, settings.redis_key_prefix)
    registrations = Limit(
        settings.auth_register_limit_per_address, settings.auth_register_window_seconds
    )
    accounts = Accounts(
        store,
        issuer,
        revocations,
        RegistrationThrottle(throttle, registrations),
        settings.auth_password_min_length,
        settings.auth_email_hash_key.encode(),
    )
    sessions = Sessions(
        store,
        issuer,
        revocations,
        login_throttle(settings, throttle),
        settings.auth_refresh_ttl_seconds,
    )
    return accounts, sessions


async def build(settings: AuthSettings) -> AuthApp:
    pool = await create_pool(
        settings.auth_database_url,
        max_size=workers.pool_share(settings.auth_db_pool_size),
        pooler=settings.auth_database_pooler,
    )
    client = redis_client.connect(settings.redis_url)
    issuer, keys = await load_issuer(settings, pool)
    # One list for every writer and the verifier, so this process's own revocations are in
    # its local copy before they are written.
    revocations = RevocationList(client, settings.redis_key_prefix)
    watch = RevocationWatch(settings.redis_url, revocations)
    revocations.on_revoke(watch.remember)
    accounts, sessions = build_use_cases(settings, pool, client, issuer, revocations)
    service_accounts = build_service_accounts(settings, pool, client, issuer, revocations)
    verifier = TokenVerifier(issuer.jwks, revocations, "auth.loyalty", watch)
    addresses = AddressRule(
        key_bytes(settings.client_address_key), parse_networks(settings.auth_trusted_peers)
    )
    trail = PgAuditEvents(pool)
    server = GrpcServer(
        settings.auth_grpc_addr,
        SERVICE_NAMES,
        metrics.RPC,
        audit=CallAudit(AUDIT_POLICY, trail, addresses),
        admission=admission_settings(settings, DOMAIN),
        success_log_sample=settings.log_success_sample,
    )
    privacy = Privacy(PgUnitOfWork(pool), trail)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(
            accounts,
            sessions,
            verifier,
            issuer,
            service_accounts,
            addresses,
            privacy=privacy,
        ),
        server.server,
    )
    auth_pb2_grpc.add_UserAdminServiceServicer_to_server(
        UserAdminServicer(
            accounts,
            service_accounts,
            verifier,
            PageTokens(settings.page_token_secret),
            audit=trail,
        ),
        server.server,
    )
    keeper = RevocationKeeper(
        pool,
        revocations,
        settings.auth_access_ttl_seconds,
        settings.auth_revocation_check_seconds,
    )
    loops = [keeper.run, watch.run, keys.run, *sync_loops(settings, pool, server)]
    loops.append(retention_loop(settings, pool))
    return AuthApp(settings, pool, client, accounts, service_accounts, server, keeper, keys, loops)


def retention_loop(settings: AuthSettings, pool: Pool) -> Loop:
    if settings.auth_email_hash_key == DEVELOPMENT_EMAIL_HASH_KEY and (
        settings.environment != DEVELOPMENT
    ):
        log.warning(
            "development_email_hash_key",
            detail="set AUTH_EMAIL_HASH_KEY: the default key is public (docs/privacy.md)",
        )
    periods = RetentionPeriods(
        settings.auth_audit_retention_days,
        settings.auth_session_retention_days,
        settings.auth_erased_email_hash_retention_days,
    )
    return lambda: run_retention(pool, periods, settings.auth_retention_interval_seconds)


def sync_loops(settings: AuthSettings, pool: Pool, server: GrpcServer) -> list[Loop]:
    """The outbox relay, its pruning, and health that follows the broker."""
    health = BrokerHealth(settings.broker_unhealthy_after_seconds, server.set_serving)
    relay = OutboxRelay(
        pool,
        settings.auth_direct_url,
        settings.rabbitmq_url,
        settings.user_events_exchange,
        health,
        settings.outbox_batch_size,
    )
    return [
        relay.run,
        health.watch,
        lambda: measure_backlog(pool),
        lambda: prune_sent(
            pool, settings.outbox_retention_seconds, settings.outbox_prune_interval_seconds
        ),
    ]


async def wait_for_redis(auth: AuthApp) -> None:
    """Waits for Redis, and makes sure it holds every revocation before serving."""
    async for attempt in retrying("redis"):
        with attempt:
            await auth.redis.ping()
            await auth.keeper.restore_if_lost()
