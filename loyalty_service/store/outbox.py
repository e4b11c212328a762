"""Loyalty's outbox: events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any

from common.telemetry.trace_context import current_traceparent


class PgOutbox:
    """Loyalty's outbox over a connection (OutboxRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, event_id: str, routing_key: str, payload: bytes) -> None:
        await self._conn.execute(
            "INSERT INTO outbox (event_id, routing_key, payload, traceparent)"
            " VALUES ($1, $2, $3, $4)",
            event_id,
            routing_key,
            payload,
            current_traceparent(),  # for the relay's span to link to
        )
        # Wakes the relays (delivered when the transaction commits).
        await self._conn.execute("SELECT pg_notify('outbox', '')")
