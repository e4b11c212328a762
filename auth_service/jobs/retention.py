"""Auth's retention worker: each pass removes what is past its period (docs/privacy.md) —
audit events, sessions that ended (with their refresh tokens), and the keyed email hashes of
long-deleted accounts. Sent outbox rows are pruned by the relay's own loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service.store.personal_data import PgPersonalData
from common.rpc.grpc_errors import is_unavailable
from common.storage.audit_events import PgAuditEvents
from common.storage.db import Pool
from common.telemetry.logs import get_logger

log = get_logger(__name__)
DAY = 86_400


@dataclass(frozen=True)
class RetentionPeriods:
    audit_days: int
    session_days: int
    erased_email_hash_days: int


def _before(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=days * DAY)


async def retain_once(pool: Pool, periods: RetentionPeriods) -> dict[str, int]:
    """One pass; how many rows each step removed."""
    personal = PgPersonalData(pool)
    return {
        "audit_events": await PgAuditEvents(pool).forget_before(_before(periods.audit_days)),
        "sessions": await personal.forget_ended_sessions(_before(periods.session_days)),
        "email_hashes": await personal.forget_erased_email_hashes(
            _before(periods.erased_email_hash_days)
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
