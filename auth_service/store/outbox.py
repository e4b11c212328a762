"""The outbox: events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any

from common.trace_context import current_traceparent


async def add(conn: Any, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None:
    """The row carries the current request's traceparent, for the relay's span to link to."""
    await conn.execute(
        "INSERT INTO outbox (event_id, user_id, routing_key, payload, traceparent)"
        " VALUES ($1, $2, $3, $4, $5)",
        event_id,
        user_id,
        routing_key,
        payload,
        current_traceparent(),
    )


async def notify(conn: Any) -> None:
    """Wakes the relays (delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify('outbox', '')")


async def claim(conn: Any, limit: int) -> list[Any]:
    """The oldest unsent rows, locked for this transaction; rows other relays hold are skipped."""
    rows: list[Any] = await conn.fetch(
        "SELECT id, event_id, routing_key, payload, traceparent FROM outbox WHERE sent_at IS NULL"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return rows


async def mark_sent(conn: Any, ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def prune(conn: Any, older_than_seconds: float) -> int:
    deleted: str = await conn.execute(
        "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)", older_than_seconds
    )
    return int(deleted.split()[-1])


async def backlog(conn: Any) -> tuple[int, float]:
    """Unsent rows, and the age in seconds of the oldest one."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
        " FROM outbox WHERE sent_at IS NULL"
    )
    return int(row["n"]), float(row["age"])
