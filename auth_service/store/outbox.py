"""The outbox: events written in the same transaction as the change they report (the relay's
claim, mark-sent and prune are common/messaging/outbox.py's, as the table is the same in both
services)."""

from __future__ import annotations

from typing import Any

from common.telemetry.trace_context import current_traceparent


async def backlog(conn: Any) -> tuple[int, float]:
    """Unsent rows, and the age in seconds of the oldest one."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
        " FROM outbox WHERE sent_at IS NULL"
    )
    return int(row["n"]), float(row["age"])


class PgOutbox:
    """Auth's outbox over a connection (Outbox)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None:
        """The row carries the current request's traceparent, for the relay's span to link to."""
        await self._conn.execute(
            "INSERT INTO outbox (event_id, user_id, routing_key, payload, traceparent)"
            " VALUES ($1, $2, $3, $4, $5)",
            event_id,
            user_id,
            routing_key,
            payload,
            current_traceparent(),
        )

    async def notify(self) -> None:
        """Wakes the relays (delivered when the transaction commits)."""
        await self._conn.execute("SELECT pg_notify('outbox', '')")
