"""The background loop that expires stale PENDING purchases and gives their uses back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from common.grpc_errors import is_unavailable
from common.logs import get_logger
from loyalty_service.promotions import Promotions

log = get_logger(__name__)


async def sweep_once(promotions: Promotions, ttl_seconds: float) -> int:
    """Expires everything stale now, batch by batch; returns how many purchases it expired."""
    cutoff = datetime.now(UTC) - timedelta(seconds=ttl_seconds)
    total = 0
    while expired := await promotions.expire_stale(cutoff):
        total += expired
    return total


async def run_sweeper(promotions: Promotions, ttl_seconds: float, interval: float) -> None:
    while True:
        try:
            expired = await sweep_once(promotions, ttl_seconds)
            if expired:
                log.info("purchases_expired", count=expired)
        except Exception as error:
            if not is_unavailable(error):
                raise
            log.warning("sweep_failed", error=repr(error))
        await asyncio.sleep(interval)
