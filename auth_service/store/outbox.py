"""The outbox: events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any


async def add(conn: Any, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, user_id, routing_key, payload) VALUES ($1, $2, $3, $4)",
        event_id,
        user_id,
        routing_key,
        payload,
    )
