"""Rejected attempts: when, who, which code and tariff, and why; and their counts by reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from loyalty_service.domain.reasons import RecordedRejection


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


class PgRejections:
    """Rejections over a connection or the pool (RejectionsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def counts_by_reason(self, code: str) -> dict[str, int]:
        rows = await self._conn.fetch(
            "SELECT reason, sum(count)::bigint AS count FROM rejection_counts WHERE code = $1"
            " GROUP BY reason",
            code,
        )
        return {r["reason"]: r["count"] for r in rows}

    async def drop_months_before(self, cutoff: datetime) -> int:
        """Drops the monthly partitions wholly older than `cutoff`: the cheap part of retention
        (no row-by-row delete, no bloat); how many rows went with them."""
        dropped: int = await self._conn.fetchval(
            "SELECT loyalty_drop_rejection_partitions($1)", cutoff
        )
        return dropped

    async def forget_before(self, cutoff: datetime, batch: int) -> int:
        """Deletes up to `batch` rows older than `cutoff` (their counts stay); how many went.
        Only the month the cutoff falls in has such rows once drop_months_before ran."""
        done: str = await self._conn.execute(
            "DELETE FROM rejections WHERE (rejection_id, occurred_at) IN ("
            "  SELECT rejection_id, occurred_at FROM rejections WHERE occurred_at < $1"
            "  ORDER BY occurred_at LIMIT $2)",
            cutoff,
            batch,
        )
        return int(done.split()[-1])

    async def page(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]:
        rows = await self._conn.fetch(
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
