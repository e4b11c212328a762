"""Tariffs (seeded by a migration)."""

from __future__ import annotations

from typing import Any

import asyncpg

from loyalty_service.domain.eligibility import Tariff


def to_tariff(row: asyncpg.Record, prefix: str = "") -> Tariff:
    """`prefix`: the columns' prefix where a tariff was joined to another table."""
    return Tariff(
        row[f"{prefix}tariff_id"],
        row[f"{prefix}name"],
        row[f"{prefix}price_minor"],
        row[f"{prefix}currency"],
        row[f"{prefix}period_days"],
    )


class PgTariffs:
    """Tariffs over a connection or the pool (TariffsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def all_tariffs(self) -> list[Tariff]:
        rows = await self._conn.fetch("SELECT * FROM tariffs ORDER BY price_minor, tariff_id")
        return [to_tariff(r) for r in rows]

    async def missing_ids(self, tariff_ids: list[str]) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT t FROM unnest($1::text[]) t WHERE t NOT IN (SELECT tariff_id FROM tariffs)",
            tariff_ids,
        )
        return [r["t"] for r in rows]
