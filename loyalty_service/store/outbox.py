"""Loyalty's outbox: events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any

from common.telemetry.trace_context import current_traceparent


async def add(conn: Any, event_id: str, routing_key: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, payload, traceparent) VALUES ($1, $2, $3, $4)",
        event_id,
        routing_key,
        payload,
        current_traceparent(),  # for the relay's span to link to
    )
    # Wakes the relays (delivered when the transaction commits).
    await conn.execute("SELECT pg_notify('outbox', '')")
