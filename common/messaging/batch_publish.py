"""Publishing a batch of messages with one socket write, each confirmed by the broker.

aio-pika's `Exchange.publish` sends each message as its own write and waits for it to drain,
and costs a task, a lock, a timeout and a `Message` per message: about half of what a relay
spent per event, and the per-write wake-ups cost the broker as much again. Here the batch's
frames are marshalled into one buffer under the channel's publish lock, each message given its
delivery tag and confirmation future exactly as `aiormq.Channel.basic_publish` does (so the
channel's confirm, nack and return handling, and its rejection of every pending confirmation
when it closes, apply unchanged). This uses aiormq's channel internals (pinned in
constraints.txt); tests/integration/test_sync_relay.py exercises it against the real broker."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiormq
from aio_pika import Exchange
from aio_pika.abc import AbstractExchange
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic
from pamqp.header import ContentHeader


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message: its properties carry a message id unique within the batch (returns of
    mandatory messages are matched to their publish by it)."""

    routing_key: str
    body: bytes
    properties: Basic.Properties


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]


async def publish_all(
    exchange: AbstractExchange, messages: Sequence[Outgoing], *, mandatory: bool
) -> list[Any]:
    """Each message's confirmation, in order: `Basic.Ack`, `Basic.Nack`, or (mandatory and
    unroutable) the returned message. Raises if the channel closes before all are known."""
    channel = cast(aiormq.Channel, await cast(Exchange, exchange).channel.get_underlay_channel())
    if not channel.publisher_confirms:
        raise ValueError("publish_all needs a channel with publisher confirms")
    confirmations: list[asyncio.Future[Any]] = []
    frames: list[Any] = []
    async with channel.lock:
        first_tag = channel.delivery_tag
        sent = False
        try:
            for message in messages:
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                message_id = message.properties.message_id
                if not message_id:
                    raise ValueError("every message of a batch needs a message id")
                confirmation = channel.create_future()
                channel.confirmations[tag] = confirmation
                channel.message_id_delivery_tag[message_id] = tag
                confirmation.add_done_callback(functools.partial(_forget, channel, message_id, tag))
                confirmations.append(confirmation)
                frames.append(
                    Basic.Publish(
                        exchange=exchange.name, routing_key=message.routing_key, mandatory=mandatory
                    )
                )
                frames.append(
                    ContentHeader(properties=message.properties, body_size=len(message.body))
                )
                frames.extend(channel._split_body(message.body))
            drained = channel.create_future()
            await channel.write_queue.put(ChannelFrame.marshall(channel.number, frames, drained))
            sent = True
            await drained
        except BaseException:
            if not sent:
                # The broker never saw these publishes: give their delivery tags back while
                # the lock is held, as aiormq does for one message.
                channel.delivery_tag = first_tag
                for number in range(first_tag + 1, first_tag + 1 + len(confirmations)):
                    channel.confirmations.pop(number, None)
                for confirmation in confirmations:
                    confirmation.cancel()
            raise
    return list(await asyncio.gather(*confirmations))
