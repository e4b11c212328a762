"""Loyalty's outbox: events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any


async def add(conn: Any, event_id: str, routing_key: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ($1, $2, $3)",
        event_id,
        routing_key,
        payload,
    )
    # Wakes the relays (delivered when the transaction commits).
    await conn.execute("SELECT pg_notify('outbox', '')")
