"""The user-events consumer: keeps the users mirror as auth reports it.

Its durable quorum queue is bound to both routing keys. The messages that have arrived (up to
half the prefetch window, so that the broker sends the other half meanwhile) are applied
together in one statement, each event only if its version is
newer than the mirror's, and acknowledged together (`multiple`) after that commits. A
message that fails is republished to a retry queue whose TTL sends it back later (delays grow
with each try); after the last try, or at once when it cannot be parsed, it is parked in the
dead-letter queue. Neither blocks the messages behind it, and nothing is dropped: the copy is
confirmed by the broker before the original is acknowledged.

Deliveries are taken from aiormq's channel as they come (aiormq's `DeliveredMessage`): aio-pika's
per-message `IncomingMessage` and the task it starts for each were a sixth of the consumer's CPU
per event in a drain; declarations still go through aio-pika."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import sentry_sdk
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from google.protobuf.message import DecodeError
from pamqp.commands import Basic

from common.messaging.broker import (
    REGISTERED,
    STATUS_CHANGED,
    BrokerHealth,
    declare_exchange,
    run_connected,
)
from common.rpc.user_status_proto import from_proto
from common.storage.db import Pool, retrying
from common.telemetry.logs import get_logger
from common.telemetry.trace_context import consuming
from common.user_status import UserStatus
from loyalty_service import metrics
from loyalty_service.store.users import apply_user_statuses
from protogen.loyalty.events.v1 import events_pb2

log = get_logger(__name__)
ATTEMPT_HEADER = "x-attempt"


class PoisonMessage(Exception):
    """A message no retry can fix."""


@dataclass(frozen=True)
class Change:
    user_id: str
    status: UserStatus
    version: int


def parse(body: bytes) -> Change:
    try:
        event = events_pb2.UserEvent.FromString(body)
        status = from_proto(event.status)
        user_id = str(uuid.UUID(event.user_id))
    except (DecodeError, ValueError) as error:
        raise PoisonMessage(f"not a UserEvent: {error}") from None
    if status is None or event.version < 1:
        raise PoisonMessage(f"bad status or version: {status} {event.version}")
    return Change(user_id, status, event.version)


def newest_per_user(changes: Iterable[Change]) -> list[Change]:
    """Each user's newest change of a window: an older one of the same user would be stale
    once the newest is applied, and one statement cannot write a user's row twice."""
    newest: dict[str, Change] = {}
    for change in changes:
        held = newest.get(change.user_id)
        if held is None or change.version > held.version:
            newest[change.user_id] = change
    return list(newest.values())


class NotRepublished(Exception):
    """The broker did not confirm a message's copy to a retry or dead-letter queue: the original
    stays unacknowledged, to come again."""


def headers_of(message: DeliveredMessage) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


def attempt_of(message: DeliveredMessage) -> int:
    """How many times this message has failed before (our header; absent on the first try)."""
    value = headers_of(message).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def queue_names(queue: str, delays: list[float]) -> tuple[list[str], str]:
    """Retry queues are named by their delay, so changing the delays declares new queues
    (RabbitMQ refuses to redeclare a queue with another TTL) and the old ones drain."""
    return [f"{queue}.retry.{round(d * 1000)}ms" for d in delays], f"{queue}.dead"


class UserEventsConsumer:
    def __init__(
        self,
        pool: Pool,
        url: str,
        exchange: str,
        queue: str,
        retry_delays: list[float],
        health: BrokerHealth,
        prefetch: int = 400,
    ) -> None:
        self._pool = pool
        self._url = url
        self._exchange = exchange
        self._queue = queue
        self._delays = retry_delays
        self.health = health
        self._prefetch = prefetch
        self._retry_queues, self._dead_queue = queue_names(queue, retry_delays)

    async def run(self) -> None:
        await run_connected(self._url, self._session, self.health, "user_events")

    async def _declare(self, channel: AbstractChannel) -> aio_pika.abc.AbstractQueue:
        exchange = await declare_exchange(channel, self._exchange)
        queue = await channel.declare_queue(
            self._queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        for key in (REGISTERED, STATUS_CHANGED):
            await queue.bind(exchange, key)
        for name, delay in zip(self._retry_queues, self._delays, strict=True):
            # Expired messages go back to the main queue through the default exchange.
            await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self._queue,
                },
            )
        await channel.declare_queue(self._dead_queue, durable=True)
        return queue

    async def _session(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._declare(channel)
        underlay = await channel.get_underlay_channel()
        arrived = Arrivals()
        await underlay.basic_consume(queue.name, arrived.put)
        while True:
            # Half the prefetch window at a time: the broker sends the next half while this
            # one is applied, instead of waiting for its acknowledgement.
            await self.handle(underlay, await arrived.window(max(1, self._prefetch // 2)))

    async def handle(
        self, channel: aiormq.abc.AbstractChannel, messages: list[DeliveredMessage]
    ) -> None:
        """One window, traced as its first message's delivery (a lone event, the usual case
        outside a backlog, keeps its whole trace; in a window the others' traces end at their
        publish): the unparseable parked one by one, the rest applied in one statement and
        acknowledged with one `multiple` ack (or, if that fails, retried one by one)."""
        with consuming(messages[0].header.properties.headers, "user_events"):
            await self._handle(channel, messages)

    async def _handle(
        self, channel: aiormq.abc.AbstractChannel, messages: list[DeliveredMessage]
    ) -> None:
        parsed: list[tuple[DeliveredMessage, Change]] = []
        for message in messages:
            try:
                parsed.append((message, parse(message.body)))
            except PoisonMessage as error:
                await self._park(channel, message, str(error))
        if not parsed:
            return
        try:
            await self._apply([change for _, change in parsed])
        except Exception as error:
            for message, _ in parsed:
                await self._retry_or_park(channel, message, repr(error))
            return
        # Delivery tags grow along the channel: the last one acknowledges the whole window
        # (the parked ones were acknowledged already, after their copies were confirmed).
        last = max(message.delivery_tag or 0 for message, _ in parsed)
        await channel.basic_ack(last, multiple=True)

    async def _apply(self, changes: list[Change]) -> None:
        rows = [(c.user_id, str(c.status), c.version) for c in newest_per_user(changes)]
        # While Postgres is down nothing can be applied: wait for it rather than burn retries.
        async for attempt in retrying("postgres", give_up_after=30):
            with attempt:
                applied = await apply_user_statuses(self._pool, rows)
        metrics.CONSUMER_DELIVERIES.labels("applied").inc(len(applied))
        metrics.CONSUMER_DELIVERIES.labels("stale").inc(len(changes) - len(applied))

    async def _republish(
        self,
        channel: aiormq.abc.AbstractChannel,
        message: DeliveredMessage,
        queue: str,
        attempt: int,
    ) -> None:
        received = message.header.properties
        copy = Basic.Properties(
            headers={**headers_of(message), ATTEMPT_HEADER: attempt},
            content_type=received.content_type,
            message_id=received.message_id,
            delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
        )
        confirmed = await channel.basic_publish(
            message.body, routing_key=queue, properties=copy, mandatory=True
        )
        if not isinstance(confirmed, Basic.Ack):
            raise NotRepublished(f"{queue}: {confirmed!r}")
        await channel.basic_ack(message.delivery_tag or 0)

    async def _retry_or_park(
        self, channel: aiormq.abc.AbstractChannel, message: DeliveredMessage, error: str
    ) -> None:
        attempt = attempt_of(message)
        if attempt >= len(self._retry_queues):
            await self._park(channel, message, error)
            return
        log.warning("user_event_retry", attempt=attempt + 1, error=error)
        metrics.CONSUMER_DELIVERIES.labels("retried").inc()
        metrics.CONSUMER_RETRIES.inc()
        await self._republish(channel, message, self._retry_queues[attempt], attempt + 1)

    async def _park(
        self, channel: aiormq.abc.AbstractChannel, message: DeliveredMessage, error: str
    ) -> None:
        message_id = message.header.properties.message_id
        log.error("user_event_dead_lettered", message_id=message_id, error=error)
        metrics.CONSUMER_DELIVERIES.labels("dead_lettered").inc()
        metrics.CONSUMER_DEAD.inc()
        sentry_sdk.capture_message(f"user event dead-lettered: {error}", level="error")
        await self._republish(channel, message, self._dead_queue, attempt_of(message))


class Arrivals:
    """Deliveries as they come, taken a window at a time: the next one, and every one that has
    arrived behind it (up to `most`). No waiting for a window to fill, so a lone event is
    applied as soon as it comes. (An asyncio.Queue cost two awaits per message.)"""

    def __init__(self) -> None:
        self._held: deque[DeliveredMessage] = deque()
        self._came = asyncio.Event()

    async def put(self, message: DeliveredMessage) -> None:
        self._held.append(message)
        self._came.set()

    async def window(self, most: int) -> list[DeliveredMessage]:
        while not self._held:
            self._came.clear()
            await self._came.wait()
        return [self._held.popleft() for _ in range(min(most, len(self._held)))]
