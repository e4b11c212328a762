"""Loyalty's own events: a queue bound to `loyalty.promo.events` receives one
`referral.rewarded` per reward, also when the broker was unreachable while it was issued (cut
with a TCP proxy between loyalty and RabbitMQ; the shared broker keeps running)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue

from common.messaging.broker import declare_exchange
from protogen.loyalty.events.v1 import promo_events_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import RUN_ID, TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.sync import eventually, through
from tests.referral_helpers import code_of, confirm, reward_codes, set_program, use
from tests.tcp_proxy import TcpProxy

Received = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
async def relaying(
    auth_server: AuthTestServer,
) -> AsyncIterator[tuple[TcpProxy, LoyaltyTestServer]]:
    """Loyalty with its loops, reaching RabbitMQ only through a proxy the test can cut."""
    proxy = TcpProxy("127.0.0.1", urlsplit(TEST_ENV["RABBITMQ_URL"]).port or 5672)
    await proxy.open()
    loyalty = await start_loyalty(
        loyalty_settings(
            auth_server.address,
            rabbitmq_url=through(proxy),
            loyalty_events_queue=f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.promo-events",
            broker_unhealthy_after_seconds=2.0,
            loyalty_db_pool_size=5,  # the machine's Postgres is shared by every test run
            loyalty_trusted_peers="127.0.0.1",  # referral tests name their callers' addresses
        ),
        loops=True,
    )
    yield proxy, loyalty
    await stop_loyalty(loyalty)
    await proxy.cut()


@pytest.fixture
async def subscriber() -> AsyncIterator[AbstractQueue]:
    """A durable queue of the test's own, bound to every routing key of the exchange."""
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    channel = await connection.channel()
    exchange = await declare_exchange(channel, TEST_ENV["PROMO_EVENTS_EXCHANGE"])
    queue = await channel.declare_queue(
        f"loyalty.promo-events.test.{RUN_ID}.{uuid.uuid4().hex[:6]}", durable=True
    )
    await queue.bind(exchange, "#")
    yield queue
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()


async def _drain(queue: AbstractQueue, into: Received) -> Received:
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        assert message.content_type == "application/x-protobuf"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        # The AMQP message id is the event's own id: what a consumer de-duplicates by.
        event_id = _event_id(message.routing_key or "", message.body)
        assert message.message_id == event_id, (message.message_id, event_id)
        into.append((message.routing_key or "", message.body))
    return into


def _event_id(key: str, body: bytes) -> str:
    if key.startswith("purchase."):
        return promo_events_pb2.PurchaseEvent.FromString(body).event_id
    if key == "referral.rewarded":
        return promo_events_pb2.ReferralRewarded.FromString(body).event_id
    assert key.startswith("referral."), key
    return promo_events_pb2.ReferralChanged.FromString(body).event_id


def _rewards_of(received: Received, referrer_id: str) -> list[promo_events_pb2.ReferralRewarded]:
    events = [
        promo_events_pb2.ReferralRewarded.FromString(b)
        for k, b in received
        if k == "referral.rewarded"
    ]
    return [e for e in events if e.referrer_id == referrer_id]


def _purchases(received: Received, key: str) -> dict[str, promo_events_pb2.PurchaseEvent]:
    events = [promo_events_pb2.PurchaseEvent.FromString(b) for k, b in received if k == key]
    return {e.purchase_id: e for e in events}


async def _referred(loyalty: LoyaltyTestServer, auth: AuthTestServer, alice: TestUser) -> str:
    """A new referee buys with Alice's code and is confirmed; returns the purchase id."""
    referee, settler = auth.token_for(), auth.token_for(role="admin")
    purchase = await use(loyalty.promo, referee, await code_of(loyalty.promo, alice))
    await confirm(loyalty.promo, settler, purchase.purchase_id)
    purchase_id: str = purchase.purchase_id
    return purchase_id


async def _unsent_rewards(loyalty: LoyaltyTestServer) -> int:
    count: int = await loyalty.app.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND routing_key = 'referral.rewarded'"
    )
    return count


async def test_purchase_and_reward_events(
    relaying: tuple[TcpProxy, LoyaltyTestServer],
    subscriber: AbstractQueue,
    auth_server: AuthTestServer,
    admin: TestUser,
) -> None:
    _, loyalty = relaying
    await set_program(loyalty.admin, admin)
    alice, bob = auth_server.token_for(), auth_server.token_for()
    purchase_id = await _referred(loyalty, auth_server, alice)
    cancelled = await use(loyalty.promo, bob, await code_of(loyalty.promo, alice))
    await loyalty.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=cancelled.purchase_id),
        metadata=bob.metadata(),
    )
    received: Received = []

    async def all_arrived() -> bool:
        await _drain(subscriber, received)
        return bool(_rewards_of(received, alice.user_id)) and cancelled.purchase_id in _purchases(
            received, "purchase.cancelled"
        )

    await eventually(all_arrived, 30, "the events of the story")
    (reward,) = _rewards_of(received, alice.user_id)
    assert reward.purchase_id == purchase_id and reward.reward.percent_off == 50
    assert [reward.reward_code] == [c.code for c in await reward_codes(loyalty.promo, alice)]
    completed = _purchases(received, "purchase.completed")[purchase_id]
    assert completed.referrer_id == alice.user_id
    assert completed.status == promo_pb2.PURCHASE_STATUS_COMPLETED
    assert completed.final_price.amount_minor == 23920
    back = _purchases(received, "purchase.cancelled")[cancelled.purchase_id]
    assert back.status == promo_pb2.PURCHASE_STATUS_CANCELLED and back.referrer_id == alice.user_id


async def test_rewards_issued_while_the_broker_is_down_are_published_once(
    relaying: tuple[TcpProxy, LoyaltyTestServer],
    subscriber: AbstractQueue,
    auth_server: AuthTestServer,
    admin: TestUser,
) -> None:
    proxy, loyalty = relaying
    await set_program(loyalty.admin, admin)
    alice = auth_server.token_for()
    await proxy.cut()
    try:
        purchase_ids = {await _referred(loyalty, auth_server, alice) for _ in range(3)}
        assert len(await reward_codes(loyalty.promo, alice)) == 3  # issued, broker or not
        assert await _unsent_rewards(loyalty) >= 3
    finally:
        await proxy.open()
    received: Received = []

    async def published() -> bool:
        await _drain(subscriber, received)
        return (
            len(_rewards_of(received, alice.user_id)) >= 3 and await _unsent_rewards(loyalty) == 0
        )

    await eventually(published, 60, "the rewards published after the broker came back")
    await _drain(subscriber, received)
    rewards = _rewards_of(received, alice.user_id)
    assert sorted(r.purchase_id for r in rewards) == sorted(purchase_ids)
    assert len({r.event_id for r in rewards}) == 3
    assert {r.reward_code for r in rewards} == {
        c.code for c in await reward_codes(loyalty.promo, alice)
    }


async def _bought(
    loyalty: LoyaltyTestServer, admin: TestUser, user: TestUser, code: str
) -> promo_pb2.Purchase:
    purchase: promo_pb2.Purchase = await loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=user.metadata()
    )
    return purchase


async def test_every_purchase_event_carries_the_prices_and_the_schedule(
    relaying: tuple[TcpProxy, LoyaltyTestServer],
    subscriber: AbstractQueue,
    auth_server: AuthTestServer,
    admin: TestUser,
) -> None:
    """purchase.completed, .cancelled, .refunded and .expired: one each, with the tariff,
    base price, discount, final price, schedule (50% for 3 months, then the full price) and,
    for the refund, its reason."""
    _, loyalty = relaying
    code = f"EVT{uuid.uuid4().hex[:10].upper()}"
    await loyalty.create_code(
        admin,
        code=code,
        percent_off=50,
        all_users=True,
        per_user_limit=0,
        duration=promo_pb2.DURATION_REPEATING,
        duration_periods=3,
    )
    user, settler = auth_server.token_for(), auth_server.service_token("purchases:settle")
    made = [await _bought(loyalty, admin, user, code) for _ in range(4)]
    completed, cancelled, refunded, expired = (p.purchase_id for p in made)
    ask = promo_pb2.ConfirmPurchaseRequest
    for purchase_id in (completed, refunded):
        await loyalty.promo.ConfirmPurchase(
            ask(purchase_id=purchase_id), metadata=settler.metadata()
        )
    await loyalty.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=cancelled), metadata=user.metadata()
    )
    await loyalty.promo.RefundPurchase(
        promo_pb2.RefundPurchaseRequest(purchase_id=refunded, reason="chargeback"),
        metadata=settler.metadata(),
    )
    await loyalty.app.pool.execute(
        "UPDATE purchases SET created_at = now() - interval '1 day' WHERE purchase_id = $1",
        expired,
    )
    await loyalty.app.promotions.expire_stale(datetime.now(UTC) - timedelta(hours=1))
    expected = {
        "purchase.completed": (completed, promo_pb2.PURCHASE_STATUS_COMPLETED),
        "purchase.cancelled": (cancelled, promo_pb2.PURCHASE_STATUS_CANCELLED),
        "purchase.refunded": (refunded, promo_pb2.PURCHASE_STATUS_REFUNDED),
        "purchase.expired": (expired, promo_pb2.PURCHASE_STATUS_EXPIRED),
    }
    received: Received = []

    async def all_arrived() -> bool:
        await _drain(subscriber, received)
        return all(pid in _purchases(received, key) for key, (pid, _) in expected.items())

    await eventually(all_arrived, 30, "the four purchase events")
    # The refunded purchase was completed first: two events, in that order.
    keys_of_refunded = [
        k
        for k, b in received
        if promo_events_pb2.PurchaseEvent.FromString(b).purchase_id == refunded
    ]
    assert keys_of_refunded == ["purchase.completed", "purchase.refunded"]
    for key, (purchase_id, status) in expected.items():
        event = _purchases(received, key)[purchase_id]
        assert (event.status, event.user_id, event.code) == (status, user.user_id, code)
        assert event.tariff_id == "monthly" and event.occurred_at.seconds > 0
        assert event.base_price == promo_pb2.Money(amount_minor=29900, currency="RUB")
        assert event.discount == promo_pb2.Money(amount_minor=14950, currency="RUB")
        assert event.final_price == promo_pb2.Money(amount_minor=14950, currency="RUB")
        assert [(p.periods, p.price.amount_minor) for p in event.schedule] == [
            (3, 14950),
            (0, 29900),
        ]
        assert event.refund_reason == ("chargeback" if key == "purchase.refunded" else "")
    # Exactly one event per change (the de-duplication key is unique too).
    mine = [
        promo_events_pb2.PurchaseEvent.FromString(b)
        for k, b in received
        if k.startswith("purchase.")
    ]
    mine = [e for e in mine if e.code == code]
    assert len(mine) == 5 and len({e.event_id for e in mine}) == 5
