"""A code's activity by UTC day: purchases made, confirmed, cancelled; rejections; discounts.

A purchase's status changes once and for good, so `updated_at` of a final status is the day it
was confirmed, cancelled or expired."""

from __future__ import annotations

from typing import Any

from loyalty_service.domain.reports import DayStats
from loyalty_service.store.purchases import LIVE_SQL

_DAILY = f"""
WITH activity AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS uses, 0 AS confirms,
           0 AS cancels, 0 AS rejections,
           coalesce(sum(discount_minor) FILTER (WHERE status IN {LIVE_SQL}), 0)
             AS granted
      FROM purchases WHERE code = $1 GROUP BY 1
    UNION ALL
    SELECT (updated_at AT TIME ZONE 'UTC')::date, 0, count(*) FILTER (WHERE status = 'COMPLETED'),
           count(*) FILTER (WHERE status IN ('CANCELLED', 'EXPIRED')), 0, 0
      FROM purchases WHERE code = $1 AND status <> 'PENDING' GROUP BY 1
    UNION ALL
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, 0, 0, 0, count(*), 0
      FROM rejections WHERE code = $1 GROUP BY 1
)
SELECT to_char(day, 'YYYY-MM-DD') AS day, sum(uses)::bigint AS uses,
       sum(confirms)::bigint AS confirms, sum(cancels)::bigint AS cancels,
       sum(rejections)::bigint AS rejections, sum(granted)::bigint AS granted
  FROM activity GROUP BY day ORDER BY day DESC LIMIT $2
"""


class PgReports:
    """Reports over a connection or the pool (ReportsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def daily(self, code: str, days: int) -> list[DayStats]:
        """The last `days` days with any activity, oldest first."""
        rows = await self._conn.fetch(_DAILY, code, days)
        return [
            DayStats(
                r["day"], r["uses"], r["confirms"], r["cancels"], r["rejections"], r["granted"]
            )
            for r in reversed(rows)
        ]
