"""Composition root of the loyalty process: settings → pools → use cases → server and loops."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as redis

from common.access.access_tokens import TokenVerifier
from common.access.client_address import AddressRule, key_bytes
from common.access.revocation import RevocationList
from common.access.revocation_watch import RevocationWatch
from common.access.throttle import Limit
from common.access.trust import parse_networks
from common.messaging.broker import BrokerHealth
from common.messaging.outbox_relay import OutboxRelay, measure_backlog, prune_sent
from common.processes import supervisor as workers
from common.processes.edge import listener as edge_listener
from common.rpc.admission import admission_settings
from common.rpc.audit import AuditPolicy, CallAudit
from common.rpc.channels import EVERY_METHOD, open_channel
from common.rpc.grpc_server import GrpcServer
from common.rpc.page_tokens import PageTokens
from common.storage import redis_client
from common.storage.audit_events import PgAuditEvents
from common.storage.db import Pool, create_pool
from loyalty_service import metrics
from loyalty_service.api.admin import PromoAdminServicer
from loyalty_service.api.promo import PromoServicer
from loyalty_service.config import LoyaltySettings
from loyalty_service.domain.reasons import DOMAIN
from loyalty_service.jobs.retention import RetentionPeriods, run_retention
from loyalty_service.jobs.sweeper import run_sweeper
from loyalty_service.jobs.user_events import UserEventsConsumer
from loyalty_service.jwks import AuthJwks
from loyalty_service.store.campaigns import PgCampaigns
from loyalty_service.store.personal_data import PgPersonalData
from loyalty_service.store.unit_of_work import PgUnitOfWork
from loyalty_service.use_cases.administration import PromoAdmin
from loyalty_service.use_cases.campaigns import Campaigns
from loyalty_service.use_cases.code_transfer import CodeTransfer
from loyalty_service.use_cases.guessing import GuessLimits, GuessThrottle
from loyalty_service.use_cases.privacy import Privacy
from loyalty_service.use_cases.promotions import Promotions
from loyalty_service.use_cases.referrals import Referrals
from protogen.loyalty.promo.v1 import promo_pb2_grpc

SERVICE_NAMES = ["loyalty.promo.v1.PromoService", "loyalty.promo.v1.PromoAdminService"]
# The audit trail records every admin method (AdminApplyPromoCode and the reads of users'
# purchases and rejections among them); users' own calls are not recorded.
AUDIT_POLICY = AuditPolicy(frozenset({"loyalty.promo.v1.PromoAdminService"}))
Loop = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class LoyaltyApp:
    settings: LoyaltySettings
    pool: Pool
    redis: redis.Redis
    auth_channel: grpc.aio.Channel
    verifier: TokenVerifier
    promotions: Promotions
    admin: PromoAdmin
    server: GrpcServer
    # Background loops run beside the server and stop with it.
    loops: list[Loop] = field(default_factory=list)
    referrals: Referrals | None = None

    async def close(self) -> None:
        await self.auth_channel.close()
        await self.pool.close()
        await self.redis.aclose()


async def build(
    settings: LoyaltySettings, interceptors: Iterable[grpc.aio.ServerInterceptor] = ()
) -> LoyaltyApp:
    pool = await create_pool(
        settings.loyalty_database_url,
        max_size=workers.pool_share(settings.loyalty_db_pool_size),
        pooler=settings.loyalty_database_pooler,
    )
    client = redis_client.connect(settings.redis_url)
    # The channel carries GetJwks only, a read: every call on it may be retried.
    channel = open_channel(settings.auth_grpc_addr, EVERY_METHOD)
    revocations = RevocationList(client, settings.redis_key_prefix)
    watch = RevocationWatch(settings.redis_url, revocations)
    verifier = TokenVerifier(AuthJwks(channel), revocations, DOMAIN, watch)
    store = PgUnitOfWork(pool)
    referrals = Referrals(store, settings.loyalty_address_hash_key.encode())
    promotions = Promotions(store, referrals, guess_throttle(settings))
    admin = PromoAdmin(store, Promotions(store, referrals))
    addresses = AddressRule(
        key_bytes(settings.client_address_key), parse_networks(settings.loyalty_trusted_peers)
    )
    trail = PgAuditEvents(pool)
    server = GrpcServer(
        settings.loyalty_grpc_addr,
        SERVICE_NAMES,
        metrics.RPC,
        interceptors,
        audit=CallAudit(AUDIT_POLICY, trail, addresses),
        admission=admission_settings(settings, DOMAIN),
        success_log_sample=settings.log_success_sample,
        also=edge_listener(settings.loyalty_edge_sockets),
    )
    page_tokens = PageTokens(settings.page_token_secret)
    promo_pb2_grpc.add_PromoServiceServicer_to_server(
        PromoServicer(
            promotions,
            verifier,
            page_tokens,
            addresses,
            referrals=referrals,
            privacy=Privacy(PgPersonalData(pool), promotions),
        ),
        server.server,
    )
    promo_pb2_grpc.add_PromoAdminServiceServicer_to_server(
        PromoAdminServicer(
            admin,
            verifier,
            page_tokens,
            CodeTransfer(store, admin),
            referrals=referrals,
            audit=trail,
            campaigns=Campaigns(PgCampaigns(pool), store),
        ),
        server.server,
    )
    loops: list[Loop] = [
        lambda: run_sweeper(
            promotions,
            settings.purchase_pending_ttl_seconds,
            settings.sweeper_interval_seconds,
            settings.loyalty_rejection_retention_seconds,
            referrals,
        ),
        watch.run,
        retention_loop(settings, pool),
        *sync_loops(settings, pool, server),
        *event_loops(settings, pool),
    ]
    return LoyaltyApp(
        settings, pool, client, channel, verifier, promotions, admin, server, loops, referrals
    )


def retention_loop(settings: LoyaltySettings, pool: Pool) -> Loop:
    periods = RetentionPeriods(
        settings.loyalty_audit_retention_days,
        settings.loyalty_referral_address_retention_days,
        settings.loyalty_promo_failure_window_seconds,
    )
    return lambda: run_retention(pool, periods, settings.loyalty_retention_interval_seconds)


def guess_throttle(settings: LoyaltySettings) -> GuessThrottle:
    window = settings.loyalty_promo_failure_window_seconds
    limits = GuessLimits(
        Limit(settings.loyalty_promo_failures_per_user, window),
        Limit(settings.loyalty_promo_failures_per_address, window),
    )
    return GuessThrottle(limits)


def sync_loops(settings: LoyaltySettings, pool: Pool, server: GrpcServer) -> list[Loop]:
    """The user-events consumer, and health that follows the broker."""
    health = BrokerHealth(settings.broker_unhealthy_after_seconds, server.set_serving)
    consumer = UserEventsConsumer(
        pool,
        settings.rabbitmq_url,
        settings.user_events_exchange,
        settings.loyalty_events_queue,
        settings.consumer_retry_delays,
        health,
    )
    return [consumer.run, health.watch]


def event_loops(settings: LoyaltySettings, pool: Pool) -> list[Loop]:
    """The relay of loyalty's own events, and the pruning of what it sent. No queue of
    loyalty's own is bound to the exchange, so unrouted messages count as published
    (subscribers bind their durable queues before the events they want)."""
    relay = OutboxRelay(
        pool,
        settings.loyalty_direct_url,
        settings.rabbitmq_url,
        settings.promo_events_exchange,
        BrokerHealth(settings.broker_unhealthy_after_seconds),
        metrics.OUTBOX,
        mandatory=False,
        batch=settings.outbox_batch_size,
    )
    return [
        relay.run,
        lambda: measure_backlog(pool, metrics.OUTBOX),
        lambda: prune_sent(
            pool, settings.outbox_retention_seconds, settings.outbox_prune_interval_seconds
        ),
    ]
