"""The payment side's statements beyond confirm and cancel: a refund and the code setting
that decides whether it gives the use back. A repository over one connection (it satisfies
`SettlementRepository` itself; no pass-through)."""

from __future__ import annotations

from typing import Any

from loyalty_service.domain.purchases import Purchase
from loyalty_service.store.purchases import to_purchase


class PgSettlement:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def refund(self, purchase_id: str, reason: str) -> Purchase:
        """Marks a (locked, COMPLETED) purchase REFUNDED and keeps the payment side's reason."""
        row = await self._conn.fetchrow(
            "UPDATE purchases SET status = 'REFUNDED', refund_reason = $2, updated_at = now()"
            " WHERE purchase_id = $1 RETURNING *",
            purchase_id,
            reason,
        )
        return to_purchase(row)

    async def refund_returns_use(self, code: str) -> bool:
        """The code's own setting; a code that is gone (never, with purchases) counts as true."""
        found: bool | None = await self._conn.fetchval(
            "SELECT refund_returns_use FROM promo_codes WHERE code = $1", code
        )
        return True if found is None else found
