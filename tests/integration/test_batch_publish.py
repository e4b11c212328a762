"""A batch published in one write: every message arrives, in order, and each gets its own
confirmation, a returned (unroutable, mandatory) one told apart from the routed ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.commands import Basic

from common.messaging.batch_publish import Outgoing, publish_all
from common.messaging.broker import declare_exchange
from tests.conftest import TEST_ENV


def _outgoing(routing_key: str, index: int) -> Outgoing:
    properties = Basic.Properties(message_id=str(uuid.uuid4()), delivery_mode=2)
    return Outgoing(routing_key, f"event {index}".encode(), properties)


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        yield connection


@pytest.fixture
async def channel(connection: AbstractConnection) -> AbstractChannel:
    return await connection.channel(publisher_confirms=True)


async def _exchange(channel: AbstractChannel) -> AbstractExchange:
    name = f"{TEST_ENV['USER_EVENTS_EXCHANGE']}.batch-{uuid.uuid4().hex[:6]}"
    return await declare_exchange(channel, name)


async def test_every_message_arrives_in_order_and_each_is_acked(channel: AbstractChannel) -> None:
    exchange = await _exchange(channel)
    queue = await channel.declare_queue(f"{exchange.name}.q", auto_delete=True)
    await queue.bind(exchange, "user.#")
    batch = [_outgoing("user.status_changed", i) for i in range(300)]
    results = await publish_all(exchange, batch, mandatory=True)
    assert [type(result) for result in results] == [Basic.Ack] * len(batch)
    received = []
    for _ in batch:
        message = await queue.get(timeout=5)
        assert message is not None
        await message.ack()
        received.append((message.message_id, message.body, message.routing_key))
    expected = [(m.properties.message_id, m.body, m.routing_key) for m in batch]
    assert received == expected
    await exchange.delete()


async def test_an_unroutable_mandatory_message_is_returned_and_only_it(
    channel: AbstractChannel,
) -> None:
    exchange = await _exchange(channel)
    queue = await channel.declare_queue(f"{exchange.name}.q", auto_delete=True)
    await queue.bind(exchange, "user.registered")
    batch = [
        _outgoing("user.registered", 0),
        _outgoing("nobody.listens", 1),
        _outgoing("user.registered", 2),
    ]
    results = await publish_all(exchange, batch, mandatory=True)
    assert isinstance(results[0], Basic.Ack) and isinstance(results[2], Basic.Ack)
    assert not isinstance(results[1], Basic.Ack)
    assert results[1].header.properties.message_id == batch[1].properties.message_id
    # The same batch not mandatory: the unroutable one is dropped by the broker, and acked.
    again = await publish_all(exchange, batch, mandatory=False)
    assert [type(result) for result in again] == [Basic.Ack] * 3
    await exchange.delete()


async def test_a_closed_channel_fails_the_batch(
    connection: AbstractConnection, channel: AbstractChannel
) -> None:
    exchange = await _exchange(channel)
    other = await connection.channel(publisher_confirms=True)
    closing = await other.get_exchange(exchange.name)
    await other.close()
    with pytest.raises(aio_pika.exceptions.ChannelInvalidStateError):
        await publish_all(closing, [_outgoing("user.registered", 0)], mandatory=True)
    await exchange.delete()
