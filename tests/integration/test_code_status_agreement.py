"""A code's status is computed twice: in Python (domain/codes.py:status_of, shown on every
code) and in SQL (store/codes.py:STATUS_SQL, the ListPromoCodes filter and the active-codes
list). This pins that both agree, for every status and at its boundaries, on real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from loyalty_service.domain.codes import CodeStatus, status_of
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.store.codes import PgCodes
from tests.fixtures.loyalty import LoyaltyTestServer

NOW = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# (starts_at, ends_at, max_uses, uses, deactivated): each status, and the edges between them.
CASES: list[tuple[datetime | None, datetime | None, int, int, bool]] = [
    (None, None, 0, 0, False),  # active, unlimited
    (NOW, NOW + HOUR, 5, 4, False),  # active from this very instant, one use left
    (NOW - HOUR, None, 5, 5, False),  # exhausted: every use taken
    (None, NOW + HOUR, 1, 1, False),  # exhausted, the single use taken
    (NOW + HOUR, None, 0, 0, False),  # not started
    (NOW + HOUR, NOW + 2 * HOUR, 1, 1, False),  # not started wins over exhausted
    (None, NOW, 0, 0, False),  # expired at this very instant
    (NOW - 2 * HOUR, NOW - HOUR, 3, 3, False),  # expired wins over exhausted
    (None, None, 0, 0, True),  # deactivated
    (NOW + HOUR, NOW + 2 * HOUR, 1, 1, True),  # deactivated wins over everything
    (NOW - 2 * HOUR, NOW - HOUR, 1, 1, True),  # even over expired
]


async def _insert(pool: object, prefix: str, index: int, case: tuple) -> str:  # type: ignore[type-arg]
    starts_at, ends_at, max_uses, uses, deactivated = case
    code = f"{prefix}{index:02d}"
    spec = CodeSpec(
        code=code, percent_off=10, starts_at=starts_at, ends_at=ends_at, max_uses=max_uses
    )
    async with pool.acquire() as conn:  # type: ignore[attr-defined]
        await PgCodes(conn).insert(code, spec, Discount(DiscountKind.PERCENT_OFF, 10))
        await conn.execute(
            "UPDATE promo_codes SET deactivated_at = CASE WHEN $2 THEN now() END WHERE code = $1",
            code,
            deactivated,
        )
        # The uses taken, as the counter slots hold them (one slot is enough here).
        await conn.execute("DELETE FROM promo_code_slots WHERE code = $1", code)
        await conn.execute(
            "INSERT INTO promo_code_slots (code, slot, uses_left, taken)"
            " SELECT code, 0, CASE WHEN max_uses = 0 THEN NULL ELSE max_uses - $2 END, $2"
            " FROM promo_codes WHERE code = $1",
            code,
            uses,
        )
    return code


async def test_sql_and_python_give_every_code_the_same_status(
    loyalty_server: LoyaltyTestServer,
) -> None:
    pool = loyalty_server.app.pool
    prefix = f"AGREE{uuid.uuid4().hex[:8].upper()}X"
    made = [await _insert(pool, prefix, i, case) for i, case in enumerate(CASES)]
    everything = await PgCodes(pool).page(None, 100, prefix, "", NOW)
    assert sorted(c.code for c in everything) == made
    python = {c.code: status_of(c, NOW) for c in everything}
    # Every status occurs, so no SQL branch goes untested.
    assert set(python.values()) == set(CodeStatus)
    for status in CodeStatus:
        listed = await PgCodes(pool).page(None, 100, prefix, status.value, NOW)
        expected = sorted(code for code, found in python.items() if found is status)
        assert sorted(c.code for c in listed) == expected, status
