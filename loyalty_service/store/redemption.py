"""ApplyPromoCode and UsePromoCode as one round trip each: the server-side functions of
migrations/loyalty/0004_one_round_trip.sql (the decision, the counters, the purchase and the
rejection record, in one statement)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_APPLY = "SELECT * FROM loyalty_apply($1, $2, $3, $4)"
_USE = "SELECT * FROM loyalty_use($1, $2, $3, $4, $5, $6)"


async def apply(
    conn: Any, code: str, tariff_id: str, user_id: str, now: datetime
) -> asyncpg.Record:
    """The decision: `reason` (None: allowed), the code, the tariff's fields (tariff_*), the
    price (base_minor, discount_minor, final_minor) and the duration; a refusal is recorded."""
    row: asyncpg.Record = await conn.fetchrow(_APPLY, code, tariff_id, user_id, now)
    return row


async def use(
    conn: Any,
    code: str,
    tariff_id: str,
    user_id: str,
    request_id: str | None,
    purchase_id: str,
    now: datetime,
) -> asyncpg.Record:
    """`reason` and nothing else when refused (the refusal recorded); else the purchase's
    columns, with `is_new` False when it is the earlier purchase of this request id."""
    row: asyncpg.Record = await conn.fetchrow(
        _USE, code, tariff_id, user_id, request_id, purchase_id, now
    )
    return row
