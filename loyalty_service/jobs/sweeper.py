"""The background loop that makes the monthly partitions of purchases and rejections ahead of
need, expires stale PENDING purchases and gives their uses back, releases referral rewards
whose hold has ended, and forgets rejection rows past their retention (their counts by
reason stay)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from common.rpc.grpc_errors import is_unavailable
from common.telemetry.logs import get_logger
from loyalty_service.use_cases.promotions import Promotions
from loyalty_service.use_cases.referrals import Referrals

log = get_logger(__name__)
# Retention never set: rejection rows are kept (as before retention existed).
KEEP_FOREVER = float("inf")


async def sweep_once(promotions: Promotions, ttl_seconds: float) -> int:
    """Expires everything stale now, batch by batch; returns how many purchases it expired."""
    cutoff = datetime.now(UTC) - timedelta(seconds=ttl_seconds)
    total = 0
    while expired := await promotions.expire_stale(cutoff):
        total += expired
    return total


async def release_rewards(referrals: Referrals) -> int:
    """Releases every referral reward whose hold has ended, batch by batch (each batch one
    transaction); returns how many it released or withheld."""
    total = 0
    while released := await referrals.release_due():
        total += released
    return total


async def forget_old_rejections(promotions: Promotions, retention_seconds: float) -> int:
    """Deletes rejection rows older than the retention, batch by batch; how many went."""
    if retention_seconds == KEEP_FOREVER:
        return 0
    cutoff = datetime.now(UTC) - timedelta(seconds=retention_seconds)
    # Whole months go as partitions; only the month the cutoff falls in is deleted by rows.
    total = await promotions.drop_rejection_months(cutoff)
    while forgotten := await promotions.forget_rejections(cutoff):
        total += forgotten
    return total


async def run_sweeper(
    promotions: Promotions,
    ttl_seconds: float,
    interval: float,
    rejection_retention_seconds: float = KEEP_FOREVER,
    referrals: Referrals | None = None,
) -> None:
    while True:
        try:
            made = await promotions.make_partitions()
            if made:
                log.info("partitions_created", count=made)
            expired = await sweep_once(promotions, ttl_seconds)
            if expired:
                log.info("purchases_expired", count=expired)
            released = await release_rewards(referrals) if referrals else 0
            if released:
                log.info("referral_rewards_released", count=released)
            forgotten = await forget_old_rejections(promotions, rejection_retention_seconds)
            if forgotten:
                log.info("rejections_forgotten", count=forgotten)
        except Exception as error:
            if not is_unavailable(error):
                raise
            log.warning("sweep_failed", error=repr(error))
        await asyncio.sleep(interval)
