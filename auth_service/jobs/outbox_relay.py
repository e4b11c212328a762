"""Auth's outbox relay: the shared relay (common/messaging/outbox_relay.py), with every message
mandatory, so a user event no queue is bound for yet stays unsent instead of vanishing (loyalty
must see every status change), plus the gauges of auth's backlog."""

from __future__ import annotations

import asyncio

from auth_service.store import outbox
from common.messaging.broker import BrokerHealth
from common.messaging.outbox_relay import NotDelivered, prune_sent
from common.messaging.outbox_relay import OutboxRelay as SharedRelay
from common.storage.db import Pool
from common.storage.db_errors import UNREACHABLE_ERRORS
from common.telemetry import metrics
from common.telemetry.logs import get_logger

__all__ = ["NotDelivered", "OutboxRelay", "measure_backlog", "prune_sent"]
log = get_logger(__name__)


class OutboxRelay(SharedRelay):
    def __init__(
        self,
        pool: Pool,
        dsn: str,
        url: str,
        exchange: str,
        health: BrokerHealth,
        batch: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        super().__init__(
            pool, dsn, url, exchange, health, mandatory=True, batch=batch, poll_seconds=poll_seconds
        )


async def measure_backlog(pool: Pool, every_seconds: float = 5.0) -> None:
    """A loop: the outbox's backlog and the age of its oldest row, as gauges."""
    while True:
        try:
            rows, age = await outbox.backlog(pool)
            metrics.OUTBOX_BACKLOG.set(rows)
            metrics.OUTBOX_OLDEST_AGE.set(age)
        except UNREACHABLE_ERRORS as error:
            log.warning("outbox_backlog_unknown", error=repr(error))
        await asyncio.sleep(every_seconds)
