"""Auth's outbox relay: the shared relay (common/messaging/outbox_relay.py), with every message
mandatory, so a user event no queue is bound for yet stays unsent instead of vanishing (loyalty
must see every status change), counted in auth's outbox metrics."""

from __future__ import annotations

from auth_service import metrics
from common.messaging.broker import BrokerHealth
from common.messaging.outbox_relay import NotDelivered, prune_sent
from common.messaging.outbox_relay import OutboxRelay as SharedRelay
from common.messaging.outbox_relay import measure_backlog as measure_shared_backlog
from common.storage.db import Pool

__all__ = ["NotDelivered", "OutboxRelay", "measure_backlog", "prune_sent"]


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
            pool,
            dsn,
            url,
            exchange,
            health,
            metrics.OUTBOX,
            mandatory=True,
            batch=batch,
            poll_seconds=poll_seconds,
        )


async def measure_backlog(pool: Pool, every_seconds: float = 5.0) -> None:
    """A loop: auth's outbox backlog and the age of its oldest row, as gauges."""
    await measure_shared_backlog(pool, metrics.OUTBOX, every_seconds)
