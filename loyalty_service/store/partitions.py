"""The monthly partitions of purchases and rejections, made ahead of need."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

# Made this far ahead; the sweeper runs far more often than that, so a month always exists
# before its first row (else the row lands in the default partition and nothing fails).
AHEAD = timedelta(days=62)


class PgPartitions:
    """The partitions over a connection or the pool (PartitionsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def ensure(self, now: datetime) -> int:
        """Creates the missing partitions from this month to AHEAD; how many it created."""
        made: int = await self._conn.fetchval(
            "SELECT loyalty_ensure_partitions($1, $2)", now, now + AHEAD
        )
        return made
