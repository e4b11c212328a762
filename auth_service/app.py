"""Composition root of the auth process: settings → pools → use cases → server and loops."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from auth_service.api.servicers import AuthServicer, UserAdminServicer
from auth_service.config import AuthSettings
from auth_service.jobs.outbox_relay import OutboxRelay, measure_backlog, prune_sent
from auth_service.jobs.revocation_keeper import RevocationKeeper
from auth_service.keys import SigningKey, configured_pem, new_private_pem, signing_key
from auth_service.ratelimit import LoginLimits, LoginThrottle, RegistrationThrottle
from auth_service.store import keys as key_store
from auth_service.store.unit_of_work import PgUnitOfWork
from auth_service.token_issuer import TokenIssuer
from auth_service.use_cases.accounts import Accounts
from auth_service.use_cases.sessions import Sessions
from common.access.access_tokens import TokenVerifier
from common.access.client_address import AddressRule, key_bytes
from common.access.revocation import RevocationList
from common.access.revocation_watch import RevocationWatch
from common.access.throttle import Limit, Throttle
from common.access.trust import parse_networks
from common.messaging.broker import BrokerHealth
from common.processes import supervisor as workers
from common.rpc.grpc_server import GrpcServer
from common.rpc.page_tokens import PageTokens
from common.storage import redis_client
from common.storage.db import Pool, create_pool, retrying
from common.telemetry.logs import get_logger
from protogen.loyalty.auth.v1 import auth_pb2_grpc

SERVICE_NAMES = ["loyalty.auth.v1.AuthService", "loyalty.auth.v1.UserAdminService"]
Loop = Callable[[], Coroutine[Any, Any, None]]
DEVELOPMENT = "development"
log = get_logger("auth")


@dataclass
class AuthApp:
    settings: AuthSettings
    pool: Pool
    redis: redis.Redis
    accounts: Accounts
    server: GrpcServer
    keeper: RevocationKeeper
    # Background loops run beside the server and stop with it.
    loops: list[Loop] = field(default_factory=list)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


class NoSigningKey(SystemExit):
    """Outside development, auth does not start without a configured signing key."""


async def load_signing_key(settings: AuthSettings, pool: Pool) -> SigningKey:
    pem = configured_pem(settings.auth_jwt_private_key, settings.auth_jwt_private_key_file)
    if pem is None:
        if settings.environment != DEVELOPMENT:
            raise NoSigningKey(
                f"ENVIRONMENT={settings.environment}: set AUTH_JWT_PRIVATE_KEY or"
                " AUTH_JWT_PRIVATE_KEY_FILE (an Ed25519 private key, PEM); only development"
                " runs on a generated key"
            )
        pem = await key_store.dev_key_pem(pool, new_private_pem())
        log.warning(
            "development_signing_key",
            detail="tokens are signed with a generated key kept in the auth database;"
            " set AUTH_JWT_PRIVATE_KEY(_FILE) outside development",
        )
    return signing_key(pem)


def build_use_cases(
    settings: AuthSettings,
    pool: Pool,
    client: redis.Redis,
    issuer: TokenIssuer,
    revocations: RevocationList,
) -> tuple[Accounts, Sessions]:
    store = PgUnitOfWork(pool)
    throttle = Throttle(client, settings.redis_key_prefix)
    window = settings.auth_login_window_seconds
    logins = LoginLimits(
        Limit(settings.auth_login_limit_per_email_address, window),
        Limit(settings.auth_login_limit_per_email, window),
        Limit(settings.auth_login_limit_per_address, window),
    )
    registrations = Limit(
        settings.auth_register_limit_per_address, settings.auth_register_window_seconds
    )
    accounts = Accounts(
        store,
        issuer,
        revocations,
        RegistrationThrottle(throttle, registrations),
        settings.auth_password_min_length,
    )
    sessions = Sessions(
        store,
        issuer,
        revocations,
        LoginThrottle(throttle, logins),
        settings.auth_refresh_ttl_seconds,
    )
    return accounts, sessions


async def build(settings: AuthSettings) -> AuthApp:
    pool = await create_pool(
        settings.auth_database_url, max_size=workers.pool_share(settings.auth_db_pool_size)
    )
    client = redis_client.connect(settings.redis_url)
    issuer = TokenIssuer(await load_signing_key(settings, pool), settings.auth_access_ttl_seconds)
    # One list for every writer and the verifier, so this process's own revocations are in
    # its local copy before they are written.
    revocations = RevocationList(client, settings.redis_key_prefix)
    watch = RevocationWatch(settings.redis_url, revocations)
    revocations.on_revoke(watch.remember)
    accounts, sessions = build_use_cases(settings, pool, client, issuer, revocations)
    verifier = TokenVerifier(issuer.jwks, revocations, "auth.loyalty", watch)
    server = GrpcServer(settings.auth_grpc_addr, SERVICE_NAMES)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(
            accounts,
            sessions,
            verifier,
            issuer,
            AddressRule(
                key_bytes(settings.client_address_key),
                parse_networks(settings.auth_trusted_peers),
            ),
        ),
        server.server,
    )
    auth_pb2_grpc.add_UserAdminServiceServicer_to_server(
        UserAdminServicer(accounts, verifier, PageTokens(settings.page_token_secret)), server.server
    )
    keeper = RevocationKeeper(
        pool,
        revocations,
        settings.auth_access_ttl_seconds,
        settings.auth_revocation_check_seconds,
    )
    loops = [keeper.run, watch.run, *sync_loops(settings, pool, server)]
    return AuthApp(settings, pool, client, accounts, server, keeper, loops)


def sync_loops(settings: AuthSettings, pool: Pool, server: GrpcServer) -> list[Loop]:
    """The outbox relay, its pruning, and health that follows the broker."""
    health = BrokerHealth(settings.broker_unhealthy_after_seconds, server.set_serving)
    relay = OutboxRelay(
        pool,
        settings.auth_database_url,
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
