"""Loyalty's retention worker: each pass removes what is past its period (docs/privacy.md) —
audit events, the keyed client-address hashes of referrals and referral codes, and the guessing
throttle's buckets that are full again (a full bucket and no row are the same). Rejection
rows have their own step in the sweeper (LOYALTY_REJECTION_RETENTION_SECONDS); sent outbox
rows are pruned by the relay's loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common.rpc.grpc_errors import is_unavailable
from common.storage.audit_events import PgAuditEvents
from common.storage.db import Pool
from common.telemetry.logs import get_logger
from loyalty_service.store.personal_data import PgPersonalData
from loyalty_service.store.redemption import PgGuessBuckets

log = get_logger(__name__)
DAY = 86_400


@dataclass(frozen=True)
class RetentionPeriods:
    audit_days: int
    referral_address_days: int
    # A bucket untouched this long has refilled: LOYALTY_PROMO_FAILURE_WINDOW_SECONDS.
    guess_refill_seconds: float = 600.0


def _before(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=days * DAY)


async def retain_once(pool: Pool, periods: RetentionPeriods) -> dict[str, int]:
    """One pass; how many rows each step removed (or cleared)."""
    return {
        "audit_events": await PgAuditEvents(pool).forget_before(_before(periods.audit_days)),
        "address_hashes": await PgPersonalData(pool).forget_address_hashes(
            _before(periods.referral_address_days)
        ),
        "guess_buckets": await PgGuessBuckets(pool).forget_full(
            datetime.now(UTC) - timedelta(seconds=periods.guess_refill_seconds)
        ),
    }


async def run_retention(pool: Pool, periods: RetentionPeriods, interval: float) -> None:
    while True:
        try:
            removed = await retain_once(pool, periods)
            if any(removed.values()):
                log.info("retention_applied", **removed)
        except Exception as error:
            if not is_unavailable(error):
                raise
            log.warning("retention_failed", error=repr(error))
        await asyncio.sleep(interval)
