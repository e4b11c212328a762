"""The relay marks rows sent only when the broker took every message of the batch."""

from __future__ import annotations

import uuid

import aio_pika
import pytest

from auth_service.jobs.outbox_relay import NotDelivered, OutboxRelay
from common.messaging.broker import BrokerHealth, declare_exchange
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer


async def _unsent(auth: AuthTestServer) -> int:
    count: int = await auth.app.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def test_unroutable_events_stay_unsent_until_a_queue_is_bound(
    auth_server: AuthTestServer,
) -> None:
    await auth_server.new_user()  # at least one unsent row
    name = f"{TEST_ENV['USER_EVENTS_EXCHANGE']}.relay-{uuid.uuid4().hex[:6]}"
    settings = auth_server.app.settings
    relay = OutboxRelay(
        auth_server.app.pool,
        settings.auth_database_url,
        TEST_ENV["RABBITMQ_URL"],
        name,
        BrokerHealth(30),
        batch=50,
    )
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, name)
        before = await _unsent(auth_server)
        with pytest.raises(NotDelivered):
            await relay.publish_batch(exchange)
        assert await _unsent(auth_server) == before
        queue = await channel.declare_queue(f"{name}.q", auto_delete=True)
        await queue.bind(exchange, "#")
        sent = await relay.publish_batch(exchange)
        assert sent == min(before, 50)
        assert await _unsent(auth_server) == before - sent
        first = await queue.get(timeout=5)
        assert first is not None and first.content_type == "application/x-protobuf"
        assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        await exchange.delete()
