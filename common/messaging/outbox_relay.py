"""An outbox relay: publishes outbox rows to a topic exchange and marks them sent only after
the broker's confirm.

Rows are claimed with FOR UPDATE SKIP LOCKED inside a transaction that stays open until the
broker has confirmed every message of the batch, so several replicas never send the same row
at once, and a crash or a broker failure leaves the rows unsent, to be sent again: delivery is
at least once, and every message carries its event id for consumers to drop duplicates.
Both services run this relay (auth's, in auth_service/jobs/outbox_relay.py, adds only its
mandatory publishing and backlog gauges), so the PostgreSQL-restart handling lives here once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractExchange
from pamqp.commands import Basic

from common.messaging import outbox
from common.messaging.batch_publish import Outgoing, publish_all
from common.messaging.broker import CONTENT_TYPE, BrokerHealth, declare_exchange, run_connected
from common.rpc.grpc_errors import is_unavailable
from common.storage.db import Pool
from common.storage.db_errors import DATABASE_ERRORS, UNREACHABLE_ERRORS, Listener, listen
from common.telemetry.logs import get_logger
from common.telemetry.metrics import OutboxMetrics
from common.telemetry.trace_context import enabled as tracing_enabled
from common.telemetry.trace_context import publishing

log = get_logger(__name__)


class NotDelivered(Exception):
    """The broker did not take responsibility for every message of a batch."""


PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


def message(row: Any, exchange: str) -> Outgoing:
    """A row's message, its event id as message id; with tracing on, the `… publish` span
    (opened and ended here, around the hand-over) in its headers."""
    headers: dict[str, Any] = {}
    if tracing_enabled():
        with publishing(headers, exchange, row["routing_key"], row["traceparent"]):
            pass
    properties = Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=str(row["event_id"]),
        message_type=row["routing_key"],
        headers=headers or None,
    )
    return Outgoing(row["routing_key"], bytes(row["payload"]), properties)


class OutboxRelay:
    """`mandatory`: whether a message no queue is bound for counts as undelivered (and waits
    for a queue) or as published (topic-exchange semantics: subscribers bind first)."""

    def __init__(
        self,
        pool: Pool,
        dsn: str,
        url: str,
        exchange: str,
        health: BrokerHealth,
        metrics: OutboxMetrics,
        *,
        mandatory: bool,
        batch: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._url = url
        self._exchange_name = exchange
        self.health = health
        self._mandatory = mandatory
        self._metrics = metrics
        self._batch = batch
        self._poll = poll_seconds
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = await self._listen()
        try:
            await run_connected(self._url, self._session, self.health, "outbox_relay")
        finally:
            with contextlib.suppress(Exception):
                await listener.close()

    async def _listen(self) -> Listener:
        """A connection of its own that hears NOTIFY outbox, so new rows go out at once."""
        return await listen(self._dsn, "outbox", self._wake.set)

    async def _session(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, self._exchange_name)
        while True:
            self._wake.clear()
            try:
                full = await self.publish_batch(exchange) == self._batch
            except (aio_pika.exceptions.DeliveryError, NotDelivered) as error:
                log.warning("outbox_not_delivered", error=repr(error))
                full = False
            except DATABASE_ERRORS as error:
                # Postgres restarting ("the database system is starting up") or a connection
                # it ended: the batch rolled back, its rows stay unsent; the broker session
                # is fine, so keep it and try again at the next poll.
                if not is_unavailable(error):
                    raise
                log.warning("outbox_database_unavailable", error=repr(error))
                full = False
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def publish_batch(self, exchange: AbstractExchange) -> int:
        """Publishes up to one batch in id order; returns how many rows it sent."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await outbox.claim(conn, self._batch)
            if not rows:
                return 0
            messages = [message(row, exchange.name) for row in rows]
            results = await publish_all(exchange, messages, mandatory=self._mandatory)
            if not all(isinstance(r, Basic.Ack) for r in results):
                raise NotDelivered(f"{len(rows)} events not confirmed")
            await outbox.mark_sent(conn, [r["id"] for r in rows])
        self._metrics.published.inc(len(rows))
        return len(rows)


async def prune_sent(pool: Pool, retention_seconds: float, every_seconds: float) -> None:
    """A loop: deletes rows sent longer ago than the retention period."""
    while True:
        try:
            removed = await outbox.prune(pool, retention_seconds)
            if removed:
                log.info("outbox_pruned", rows=removed)
        except UNREACHABLE_ERRORS as error:
            log.warning("outbox_prune_failed", error=repr(error))
        await asyncio.sleep(every_seconds)


async def measure_backlog(pool: Pool, metrics: OutboxMetrics, every_seconds: float = 5.0) -> None:
    """A loop: the outbox's backlog and the age of its oldest row, as gauges (an alert on the
    age catches a relay that stopped, whatever the reason)."""
    while True:
        try:
            async with pool.acquire() as conn:
                rows, age = await outbox.backlog(conn)
            metrics.backlog.set(rows)
            metrics.oldest_age.set(age)
        except UNREACHABLE_ERRORS as error:
            log.warning("outbox_backlog_unknown", error=repr(error))
        await asyncio.sleep(every_seconds)
