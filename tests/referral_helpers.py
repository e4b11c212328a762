"""Shared steps of the referral tests: the program, personal codes, counts read in SQL."""

from __future__ import annotations

from typing import Any

import asyncpg

from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import TestUser

RUB = "RUB"


def money(amount: int) -> promo_pb2.Money:
    return promo_pb2.Money(amount_minor=amount, currency=RUB)


def program(**overrides: Any) -> promo_pb2.ReferralProgram:
    values: dict[str, Any] = {
        "enabled": True,
        "referee": promo_pb2.Discount(percent_off=20),
        "reward": promo_pb2.Discount(percent_off=50),
        "reward_valid_days": 30,
        "max_rewards_per_referrer": 0,
    }
    return promo_pb2.ReferralProgram(**(values | overrides))


async def set_program(admin_stub: Any, admin: TestUser, **overrides: Any) -> None:
    await admin_stub.SetReferralProgram(program(**overrides), metadata=admin.metadata())


async def code_of(promo_stub: Any, user: TestUser) -> str:
    answer = await promo_stub.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=user.metadata()
    )
    code: str = answer.code
    return code


async def use(promo_stub: Any, user: TestUser, code: str, request_id: str = "") -> Any:
    return await promo_stub.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=request_id),
        metadata=user.metadata(),
    )


async def confirm(promo_stub: Any, settler: TestUser, purchase_id: str) -> Any:
    """The payment side confirms (a user's own token cannot)."""
    return await promo_stub.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=purchase_id), metadata=settler.metadata()
    )


async def reward_codes(promo_stub: Any, user: TestUser) -> list[promo_pb2.ActivePromoCode]:
    page = await promo_stub.ListActivePromoCodes(
        promo_pb2.ListActivePromoCodesRequest(page_size=1000), metadata=user.metadata()
    )
    return [c for c in page.promo_codes if c.description == "referral reward"]


async def outcomes(pool: asyncpg.Pool, referrer_id: str) -> dict[str, int]:
    """The referrer's reward rows, counted by outcome (ISSUED) or withheld reason."""
    rows = await pool.fetch(
        "SELECT coalesce(reason, outcome) AS k, count(*) AS n FROM referral_rewards"
        " WHERE referrer_id = $1 GROUP BY 1",
        referrer_id,
    )
    return {r["k"]: r["n"] for r in rows}


async def issued_codes(pool: asyncpg.Pool, referrer_id: str) -> int:
    """Reward codes that exist for the referrer (whatever the reward table says)."""
    found: int = await pool.fetchval(
        "SELECT count(*) FROM promo_codes c JOIN promo_code_users u USING (code)"
        " WHERE u.user_id = $1 AND c.description = 'referral reward'",
        referrer_id,
    )
    return found
