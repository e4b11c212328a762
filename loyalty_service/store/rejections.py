"""Rejected attempts: when, who, which code and tariff, and why."""

from __future__ import annotations

from typing import Any

import asyncpg


async def record(conn: Any, user_id: str | None, code: str, tariff_id: str, reason: str) -> None:
    await conn.execute(
        "INSERT INTO rejections (user_id, code, tariff_id, reason) VALUES ($1, $2, $3, $4)",
        user_id,
        code,
        tariff_id,
        reason,
    )


async def record_many(conn: Any, rows: list[tuple[str | None, str, str, str]]) -> None:
    await conn.executemany(
        "INSERT INTO rejections (user_id, code, tariff_id, reason) VALUES ($1, $2, $3, $4)", rows
    )


async def counts_by_reason(conn: Any, code: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT reason, count(*) AS n FROM rejections WHERE code = $1 GROUP BY reason", code
    )
    return {r["reason"]: r["n"] for r in rows}


async def page(
    conn: Any, code: str, reason: str, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM rejections"
        " WHERE ($1 = '' OR code = $1) AND ($2 = '' OR reason = $2)"
        "   AND ($3::bigint IS NULL OR rejection_id < $3)"
        " ORDER BY rejection_id DESC LIMIT $4",
        code,
        reason,
        before_id,
        limit,
    )
    return rows
