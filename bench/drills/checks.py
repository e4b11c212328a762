"""What must hold after each drill, read straight from the two databases."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.drills.system import ENV


async def counters(code: str) -> tuple[int, int, int]:
    """The code's use counter, its live purchases, and the per-user use counts summed."""
    connection = await asyncpg.connect(ENV["LOYALTY_DATABASE_URL"])
    try:
        row = await connection.fetchrow(
            "SELECT promo_code_uses(c.code) AS uses,"
            " (SELECT count(*) FROM purchases p WHERE p.code = c.code"
            "   AND p.status IN ('PENDING', 'COMPLETED')) AS held,"
            " (SELECT coalesce(sum(uses), 0) FROM user_code_uses x WHERE x.code = c.code)"
            "   AS per_user"
            " FROM promo_codes c WHERE c.code = $1",
            code,
        )
    finally:
        await connection.close()
    return int(row["uses"]), int(row["held"]), int(row["per_user"])


async def _users(url: str) -> dict[str, tuple[str, int]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT user_id::text, status, version FROM users")
    finally:
        await connection.close()
    return {r["user_id"]: (r["status"], r["version"]) for r in rows}


async def unmirrored() -> int:
    """Auth's users whose status and version loyalty's mirror does not have (yet)."""
    truth = await _users(ENV["AUTH_DATABASE_URL"])
    mirror = await _users(ENV["LOYALTY_DATABASE_URL"])
    return sum(1 for user_id, state in truth.items() if mirror.get(user_id) != state)


async def events_lost(within: float = 60) -> tuple[int, float]:
    """Users still unmirrored after `within` seconds (events lost), and how long it took."""
    started = time.monotonic()
    missing = await unmirrored()
    while missing and time.monotonic() - started < within:
        await asyncio.sleep(0.2)
        missing = await unmirrored()
    return missing, time.monotonic() - started
