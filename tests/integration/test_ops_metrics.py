"""The metrics count what happened: promo uses, confirms, cancels, expiries, rejections by
reason, RPC codes and latencies, consumer outcomes and dead letters, published events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, timedelta

import aio_pika
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from common.messaging.broker import CONTENT_TYPE
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.events.v1 import events_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.sync import eventually, mirror
from tests.grpc_helpers import rejected

QUEUE = f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.ops-metrics"
USE = "/loyalty.promo.v1.PromoService/UsePromoCode"


@dataclass
class System:
    auth: AuthTestServer
    loyalty: LoyaltyTestServer
    tasks: list[asyncio.Task[None]]


@pytest.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    auth = await start_auth(auth_settings())
    tasks = [asyncio.create_task(loop()) for loop in auth.app.loops]
    settings = loyalty_settings(auth.address, loyalty_events_queue=QUEUE)
    loyalty = await start_loyalty(settings, loops=True)
    yield System(auth, loyalty, tasks)
    for task in tasks:
        task.cancel()
    await stop_loyalty(loyalty)
    await stop_auth(auth)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _mirrored(system: System, user: TestUser) -> None:
    async def there() -> bool:
        return user.user_id in await mirror(system.loyalty, [user.user_id])

    await eventually(there, 15, "the registration reached loyalty")


async def _use(system: System, user: TestUser, code: str) -> promo_pb2.Purchase:
    purchase: promo_pb2.Purchase = await system.loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=uuid.uuid4().hex),
        metadata=user.metadata(),
    )
    return purchase


async def test_promo_counters_follow_uses_confirms_cancels_expiries_and_rejections(
    system: System,
) -> None:
    published = value("auth_outbox_published_total")
    admin, user = await system.auth.new_admin(), await system.auth.new_user()
    await _mirrored(system, user)
    assert value("auth_outbox_published_total") >= published + 1  # the registration event
    code = f"M{uuid.uuid4().hex[:10].upper()}"
    await system.loyalty.create_code(admin, code=code, percent_off=10, per_user_limit=0)
    before = {
        name: value(name)
        for name in (
            "loyalty_promo_uses_total",
            "loyalty_promo_confirms_total",
            "loyalty_promo_cancels_total",
        )
    }
    expired_before, ok_before = (
        value("loyalty_promo_expiries_total"),
        value("loyalty_rpc_requests_total", method=USE, code="OK"),
    )
    not_found = value("loyalty_promo_rejections_total", reason="PROMO_CODE_NOT_FOUND")
    first, second, third = [await _use(system, user, code) for _ in range(3)]
    await system.loyalty.promo.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=first.purchase_id),
        metadata=system.auth.service_token("purchases:settle").metadata(),
    )
    await system.loyalty.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=second.purchase_id),
        metadata=user.metadata(),
    )
    missing = promo_pb2.UsePromoCodeRequest(
        code="NO-SUCH-CODE", tariff_id="monthly", request_id="x"
    )
    await rejected(
        system.loyalty.promo.UsePromoCode(missing, metadata=user.metadata()),
        grpc.StatusCode.NOT_FOUND,
    )
    # The third purchase goes stale, as the sweeper would find it once its TTL has passed.
    cutoff = third.created_at.ToDatetime(tzinfo=UTC) + timedelta(milliseconds=1)
    expired = await system.loyalty.app.promotions.expire_stale(cutoff)
    assert expired >= 1
    assert value("loyalty_promo_uses_total") == before["loyalty_promo_uses_total"] + 3
    assert value("loyalty_promo_confirms_total") == before["loyalty_promo_confirms_total"] + 1
    assert value("loyalty_promo_cancels_total") == before["loyalty_promo_cancels_total"] + 1
    assert value("loyalty_promo_expiries_total") == expired_before + expired
    assert value("loyalty_promo_rejections_total", reason="PROMO_CODE_NOT_FOUND") == not_found + 1
    assert value("loyalty_rpc_requests_total", method=USE, code="OK") == ok_before + 3
    assert value("loyalty_rpc_requests_total", method=USE, code="NOT_FOUND") >= 1
    assert value("loyalty_rpc_duration_seconds_count", method=USE) >= 4


def _event(user_id: str, status: auth_pb2.UserStatus.ValueType, version: int) -> bytes:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    event = events_pb2.UserEvent(
        event_id=str(uuid.uuid4()), user_id=user_id, status=status, version=version
    )
    event.occurred_at.CopyFrom(stamp)
    return event.SerializeToString()


async def _publish(bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(TEST_ENV["USER_EVENTS_EXCHANGE"])
        for body in bodies:
            message = aio_pika.Message(body, content_type=CONTENT_TYPE)
            await exchange.publish(message, routing_key="user.status_changed")


async def test_consumer_counts_applied_stale_and_dead_lettered_deliveries(system: System) -> None:
    outcomes = ("applied", "stale", "dead_lettered")
    before = {o: value("loyalty_consumer_deliveries_total", outcome=o) for o in outcomes}
    dead_before = value("loyalty_consumer_dead_lettered_total")
    user_id, blocked = str(uuid.uuid4()), auth_pb2.USER_STATUS_BLOCKED
    # Applied, then older (stale), then a body that is no event at all (parked).
    await _publish([_event(user_id, blocked, 2), _event(user_id, blocked, 1), b"\xff not one"])

    async def counted() -> bool:
        now = {o: value("loyalty_consumer_deliveries_total", outcome=o) for o in outcomes}
        return all(now[o] >= before[o] + 1 for o in outcomes)

    await eventually(counted, 15, "the three deliveries counted")
    assert value("loyalty_consumer_dead_lettered_total") >= dead_before + 1
    assert (await mirror(system.loyalty, [user_id]))[user_id] == ("BLOCKED", 2)
