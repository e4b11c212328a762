"""Rejected attempts: when, who, which code and tariff, and why; and their counts by reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from loyalty_service.domain.reasons import RecordedRejection

# The row and its count in one statement; a code that does not exist is counted under ''.
_RECORD = """
WITH kept AS (
    INSERT INTO rejections (user_id, code, tariff_id, reason) VALUES ($1, $2, $3, $4)
)
INSERT INTO rejection_counts (code, reason, count)
SELECT CASE WHEN EXISTS (SELECT 1 FROM promo_codes WHERE code = $2) THEN $2 ELSE '' END, $4, 1
ON CONFLICT (code, reason) DO UPDATE SET count = rejection_counts.count + 1
"""


async def record(conn: Any, user_id: str | None, code: str, tariff_id: str, reason: str) -> None:
    await conn.execute(_RECORD, user_id, code, tariff_id, reason)


async def record_many(conn: Any, rows: list[tuple[str | None, str, str, str]]) -> None:
    await conn.executemany(_RECORD, rows)


async def counts_by_reason(conn: Any, code: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT reason, count FROM rejection_counts WHERE code = $1", code)
    return {r["reason"]: r["count"] for r in rows}


async def forget_before(conn: Any, cutoff: datetime, batch: int) -> int:
    """Deletes up to `batch` rows older than `cutoff` (their counts stay); how many went."""
    done: str = await conn.execute(
        "DELETE FROM rejections WHERE rejection_id IN ("
        "  SELECT rejection_id FROM rejections WHERE occurred_at < $1"
        "  ORDER BY occurred_at LIMIT $2)",
        cutoff,
        batch,
    )
    return int(done.split()[-1])


async def page(
    conn: Any, code: str, reason: str, before_id: int | None, limit: int
) -> list[RecordedRejection]:
    rows = await conn.fetch(
        "SELECT * FROM rejections"
        " WHERE ($1 = '' OR code = $1) AND ($2 = '' OR reason = $2)"
        "   AND ($3::bigint IS NULL OR rejection_id < $3)"
        " ORDER BY rejection_id DESC LIMIT $4",
        code,
        reason,
        before_id,
        limit,
    )
    return [_rejection(r) for r in rows]


def _rejection(row: asyncpg.Record) -> RecordedRejection:
    user_id = str(row["user_id"]) if row["user_id"] else None
    return RecordedRejection(
        row["rejection_id"],
        row["occurred_at"],
        user_id,
        row["code"],
        row["tariff_id"],
        row["reason"],
    )
