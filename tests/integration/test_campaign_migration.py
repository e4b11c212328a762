"""The move to campaigns loses nothing: a database built with the migrations before 0009,
holding codes with purchases in every status, rejections and budgets, migrated → every figure
of each code's report is what it was, and each code belongs to a one-code campaign."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from common.storage.migrations import drop_database, migrate
from loyalty_service.store.codes import PgCodes
from loyalty_service.store.purchases import PgPurchases
from loyalty_service.store.rejections import PgRejections
from loyalty_service.store.reports import PgReports
from tests.conftest import PG
from tests.fixtures.loyalty import LOYALTY_FUNCTIONS, LOYALTY_MIGRATIONS

CAMPAIGNS = "0009_campaigns.sql"


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    name = f"{PG}/campaign_migration_{uuid.uuid4().hex[:10]}"
    yield name
    await drop_database(name)


def _before_campaigns(tmp_path: Path) -> Path:
    """The versioned migrations as they were before campaigns."""
    older = tmp_path / "before"
    older.mkdir()
    for path in LOYALTY_MIGRATIONS.glob("*.sql"):
        if path.name < CAMPAIGNS:
            shutil.copy(path, older / path.name)
    return older


async def _use(conn: asyncpg.Connection, code: str, tariff: str) -> Any:
    """A use as the pre-campaign loyalty_use (migration 0004's) made it."""
    return await conn.fetchrow(
        "SELECT * FROM loyalty_use($1, $2, $3, NULL, $4, now())",
        code,
        tariff,
        uuid.uuid4(),
        uuid.uuid4(),
    )


async def _history(conn: asyncpg.Connection) -> list[str]:
    """Codes with and without budgets and caps; purchases ending in every status; rejections."""
    codes = []
    for n, (max_uses, budget) in enumerate([(0, None), (5, None), (0, 20000), (0, None)]):
        code = f"OLD{n}{uuid.uuid4().hex[:6].upper()}"
        await conn.execute(
            "INSERT INTO promo_codes (code, discount_kind, discount_value, all_users,"
            " per_user_limit, max_uses, budget_minor)"
            " VALUES ($1, 'PERCENT_OFF', 10, true, 0, $2, $3)",
            code,
            max_uses,
            budget,
        )
        codes.append(code)
    await conn.execute("UPDATE promo_codes SET deactivated_at = now() WHERE code = $1", codes[3])
    for code in codes[:3]:
        made = [await _use(conn, code, "monthly") for _ in range(6)]
        made += [await _use(conn, code, "weekly-none")]  # TARIFF_NOT_FOUND
        ids = [row["purchase_id"] for row in made if row["reason"] is None]
        endings = ["COMPLETED", "CANCELLED", "EXPIRED", "REFUNDED"]
        for purchase_id, status in zip(ids[:4], endings, strict=True):
            row = await conn.fetchrow(
                "UPDATE purchases SET status = $2, updated_at = now() WHERE purchase_id = $1"
                " RETURNING code, slot, discount_minor",
                purchase_id,
                status,
            )
            if status in ("CANCELLED", "EXPIRED", "REFUNDED"):
                await conn.execute(
                    "SELECT loyalty_give_back($1, $2, 1, $3)", row[0], row[1], row[2]
                )
    await _use(conn, codes[3], "monthly")  # PROMO_CODE_INACTIVE
    return codes


async def _old_figures(conn: Any, code: str) -> dict[str, Any]:
    """What GetPromoCodeReport answered: uses, discount granted, statuses, reasons, days."""
    return {
        "uses": await conn.fetchval("SELECT promo_code_uses($1)", code),
        "spent": await conn.fetchval("SELECT promo_code_spent($1)", code),
        "budget_spent": await conn.fetchval(
            "SELECT budget_spent_minor FROM promo_codes WHERE code = $1", code
        ),
        "statuses": await PgPurchases(conn).counts_by_status(code),
        "reasons": await PgRejections(conn).counts_by_reason(code),
        "daily": await PgReports(conn).daily(code, 400),
    }


async def test_every_code_keeps_its_report_and_gets_a_campaign(dsn: str, tmp_path: Path) -> None:
    assert await migrate(dsn, _before_campaigns(tmp_path))
    conn = await asyncpg.connect(dsn)
    try:
        codes = await _history(conn)
        before = {code: await _old_figures(conn, code) for code in codes}
        assert before[codes[0]]["statuses"] == {
            "PENDING": 2, "COMPLETED": 1, "CANCELLED": 1, "EXPIRED": 1, "REFUNDED": 1,
        }  # fmt: skip
        assert before[codes[2]]["budget_spent"] > 0

        await migrate(dsn, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS)

        for code in codes:
            assert await _old_figures(conn, code) == before[code], code
            found = await PgCodes(conn).get(code)
            assert found is not None and found.campaign_id
            assert found.uses == before[code]["uses"]
            assert found.budget_spent == before[code]["spent"]
            campaign = await conn.fetchrow(
                "SELECT k.*, (SELECT count(*) FROM promo_codes c"
                " WHERE c.campaign_id = k.campaign_id) AS codes FROM campaigns k"
                " WHERE k.campaign_id = $1",
                uuid.UUID(found.campaign_id),
            )
            assert (campaign["name"], campaign["kind"], campaign["codes"]) == (code, "CODE", 1)
            assert campaign["status"] == "ACTIVE"
        # The deactivated code stays deactivated, and still refuses as it did.
        after = await _use(conn, codes[3], "monthly")
        assert after["reason"] == "PROMO_CODE_INACTIVE"
        # A use after the migration counts as before, on the code.
        assert (await _use(conn, codes[0], "monthly"))["reason"] is None
        assert await conn.fetchval("SELECT promo_code_uses($1)", codes[0]) == (
            before[codes[0]]["uses"] + 1
        )
    finally:
        await conn.close()
