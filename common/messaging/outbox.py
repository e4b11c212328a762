"""The outbox table both services keep (id, event_id, routing_key, payload, sent_at): what a
relay claims, marks sent and prunes."""

from __future__ import annotations

from typing import Any


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
