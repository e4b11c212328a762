"""Migration 0004 on a database with history keeps every row (purchases and rejections move
into monthly partitions, the counters into slots), and the partitions' upkeep: made ahead,
made once however many replicas ask, and old rejection months dropped whole."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from common.storage.migrations import drop_database, migrate
from loyalty_service.domain.reasons import Reason
from loyalty_service.store import partitions
from loyalty_service.store.partitions import PgPartitions
from loyalty_service.store.redemption import PgRedemption
from loyalty_service.store.rejections import PgRejections
from tests.conftest import PG, RUN_ID
from tests.fixtures.loyalty import LOYALTY_FUNCTIONS, LOYALTY_MIGRATIONS

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)  # a month well before the migration's own window


@pytest.fixture
async def before_0004(tmp_path: Path) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database at migration 0003 (the schema 0004 finds in production)."""
    dsn = f"{PG}/loyalty_history_{RUN_ID}"
    await drop_database(dsn)
    for sql in sorted(LOYALTY_MIGRATIONS.glob("*.sql")):
        if sql.name < "0004":
            shutil.copy(sql, tmp_path / sql.name)
    await migrate(dsn, tmp_path)
    conn = await asyncpg.connect(dsn)
    try:
        yield dsn, conn
    finally:
        await conn.close()
        await drop_database(dsn)


async def _history(conn: asyncpg.Connection) -> dict[str, str]:
    """Rows as 0003 wrote them: two codes with uses taken, purchases of two months (one with a
    request id, one a referral), rejections of two months."""
    ids = {name: str(uuid.uuid4()) for name in ("old", "live", "referred", "u1", "u2", "owner")}
    await conn.execute(
        "INSERT INTO promo_codes (code, discount_kind, discount_value, max_uses, uses,"
        " per_user_limit, all_users, budget_minor, budget_spent_minor) VALUES"
        " ('CAPPED', 'PERCENT_OFF', 10, 5, 2, 0, true, 100000, 5980),"
        " ('OPEN', 'PERCENT_OFF', 10, 0, 1, 0, true, NULL, 2990)"
    )
    await conn.execute(
        "INSERT INTO promo_codes (code, discount_kind, discount_value, referrer_id)"
        " VALUES ('REFER', 'PERCENT_OFF', 0, $1)",
        ids["owner"],
    )
    await conn.execute(
        "INSERT INTO purchases (purchase_id, user_id, code, tariff_id, base_minor,"
        " discount_minor, final_minor, currency, status, request_id, created_at) VALUES"
        " ($1, $4, 'CAPPED', 'monthly', 29900, 2990, 26910, 'RUB', 'COMPLETED', 'pay-1', $6),"
        " ($2, $4, 'CAPPED', 'monthly', 29900, 2990, 26910, 'RUB', 'PENDING', NULL, $7),"
        " ($3, $5, 'REFER', 'monthly', 29900, 2990, 26910, 'RUB', 'PENDING', NULL, $7)",
        ids["old"],
        ids["live"],
        ids["referred"],
        ids["u1"],
        ids["u2"],
        OLD,
        NOW,
    )
    await conn.execute(
        "INSERT INTO referrals (purchase_id, referee_id, referrer_id, code, status)"
        " VALUES ($1, $2, $3, 'REFER', 'PENDING')",
        ids["referred"],
        ids["u2"],
        ids["owner"],
    )
    await conn.execute(
        "INSERT INTO rejections (occurred_at, code, tariff_id, reason) VALUES"
        " ($1, 'CAPPED', 'monthly', 'PROMO_CODE_EXHAUSTED'),"
        " ($2, 'CAPPED', 'monthly', 'PROMO_CODE_EXHAUSTED')",
        OLD,
        NOW,
    )
    return ids


async def test_migrating_a_database_with_history_keeps_every_row(
    before_0004: tuple[str, asyncpg.Connection],
) -> None:
    dsn, conn = before_0004
    ids = await _history(conn)
    rejection_ids = [r["rejection_id"] for r in await conn.fetch("SELECT * FROM rejections")]
    assert await migrate(dsn, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS) >= ["0004_one_round_trip"]

    placed = dict(
        await conn.fetch("SELECT purchase_id::text, tableoid::regclass::text FROM purchases")
    )
    assert placed == {
        ids["old"]: f"purchases_{OLD:%Y_%m}",
        ids["live"]: f"purchases_{NOW:%Y_%m}",
        ids["referred"]: f"purchases_{NOW:%Y_%m}",
    }
    assert (
        await conn.fetchval(
            "SELECT purchase_id::text FROM purchase_requests WHERE user_id = $1"
            " AND request_id = 'pay-1'",
            ids["u1"],
        )
        == ids["old"]
    )
    assert await conn.fetchval("SELECT count(*) FROM referrals") == 1
    kept = [r["rejection_id"] for r in await conn.fetch("SELECT * FROM rejections")]
    assert sorted(kept) == sorted(rejection_ids)
    # The counters: uses taken sit in slot 0, the uses left spread over the rest.
    capped = await conn.fetch(
        "SELECT uses_left, taken, spent_minor FROM promo_code_slots WHERE code = 'CAPPED'"
    )
    assert sum(r["uses_left"] for r in capped) == 3
    assert sum(r["taken"] for r in capped) == 2
    assert sum(r["spent_minor"] for r in capped) == 5980
    assert await conn.fetchval("SELECT promo_code_uses('OPEN')") == 1
    assert await conn.fetchval("SELECT promo_code_spent('OPEN')") == 2990

    # The new rows: ids continue past the old ones; a use and a refusal work at once.
    user = str(uuid.uuid4())
    for _ in range(3):
        buyer, purchase = str(uuid.uuid4()), str(uuid.uuid4())
        outcome = await PgRedemption(conn).use("CAPPED", "monthly", buyer, None, purchase, NOW)
        assert outcome.reason is None
    outcome = await PgRedemption(conn).use("CAPPED", "monthly", user, None, str(uuid.uuid4()), NOW)
    assert outcome.reason is Reason.PROMO_CODE_EXHAUSTED
    newest = await conn.fetchval("SELECT max(rejection_id) FROM rejections")
    assert newest > max(rejection_ids)
    # The purchase from before the slots gives its use back into slot 0.
    live = await conn.fetchrow("SELECT * FROM purchases WHERE purchase_id = $1", ids["live"])
    await conn.execute("SELECT loyalty_give_back($1, $2, 1, $3)", "CAPPED", live["slot"], 2990)
    assert await conn.fetchval("SELECT promo_code_uses('CAPPED')") == 4
    assert (
        await conn.fetchval("SELECT budget_spent_minor FROM promo_codes WHERE code = 'CAPPED'")
        == 5980 + 3 * 2990 - 2990
    )


async def test_partitions_are_made_ahead_once_and_old_rejection_months_dropped_whole(
    before_0004: tuple[str, asyncpg.Connection],
) -> None:
    dsn, conn = before_0004
    await _history(conn)
    await migrate(dsn, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS)
    ahead = NOW + partitions.AHEAD
    await conn.execute(
        "DROP TABLE IF EXISTS " + f"purchases_{ahead:%Y_%m}, rejections_{ahead:%Y_%m}"
    )
    assert await PgPartitions(conn).ensure(NOW) == 2
    assert await PgPartitions(conn).ensure(NOW) == 0
    assert await conn.fetchval("SELECT to_regclass($1)::text", f"purchases_{ahead:%Y_%m}")

    # A row in a month that has no partition lands in the default one, and nothing fails.
    far = NOW - timedelta(days=3000)
    await conn.execute(
        "INSERT INTO rejections (occurred_at, code, tariff_id, reason)"
        " VALUES ($1, 'X', 'monthly', 'PROMO_CODE_NOT_FOUND')",
        far,
    )
    assert (
        await conn.fetchval(
            "SELECT tableoid::regclass::text FROM rejections WHERE occurred_at = $1", far
        )
        == "rejections_default"
    )

    cutoff = NOW - timedelta(days=200)
    assert await PgRejections(conn).drop_months_before(cutoff) == 1
    assert await conn.fetchval("SELECT to_regclass($1)", f"rejections_{OLD:%Y_%m}") is None
    # The default partition's old row goes row by row; this month's rows stay.
    assert await PgRejections(conn).forget_before(cutoff, 100) == 1
    assert await conn.fetchval("SELECT count(*) FROM rejections") == 1
    assert await conn.fetchval("SELECT count(*) FROM purchases") == 3
