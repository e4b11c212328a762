"""Shared steps of the referral tests: the program, personal codes, counts read in SQL."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import asyncpg

from protogen.loyalty.promo.v1 import promo_pb2
from tests.active_codes import all_active
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
        # Released at the confirm, as before holds existed; the hold's tests set their own.
        "reward_hold_seconds": 0,
    }
    return promo_pb2.ReferralProgram(**(values | overrides))


async def set_program(admin_stub: Any, admin: TestUser, **overrides: Any) -> None:
    await admin_stub.SetReferralProgram(program(**overrides), metadata=admin.metadata())


def address_of(user: TestUser) -> str:
    """A client address of the user's own (from their id), so that referrals between test
    users are not same-address ones: every test call comes from 127.0.0.1."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | (uuid.UUID(user.user_id).int >> 64)))


def from_address(user: TestUser, address: str | None = None) -> tuple[tuple[str, str], ...]:
    """The user's metadata with their client address, as a trusted gateway would pass it
    (the loyalty test servers trust 127.0.0.1: tests/fixtures/loyalty.py)."""
    return (*user.metadata(), ("x-forwarded-for", address or address_of(user)))


async def code_of(promo_stub: Any, user: TestUser, address: str | None = None) -> str:
    answer = await promo_stub.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=from_address(user, address)
    )
    code: str = answer.code
    return code


async def use(
    promo_stub: Any, user: TestUser, code: str, request_id: str = "", address: str | None = None
) -> Any:
    return await promo_stub.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=request_id),
        metadata=from_address(user, address),
    )


async def confirm(promo_stub: Any, settler: TestUser, purchase_id: str) -> Any:
    """Confirms as `settler`: an admin (or a service with purchases:settle) — the payment
    side settles, not the buyer."""
    return await promo_stub.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=purchase_id), metadata=settler.metadata()
    )


async def reward_codes(promo_stub: Any, user: TestUser) -> list[promo_pb2.ActivePromoCode]:
    return [c for c in await all_active(promo_stub, user) if c.description == "referral reward"]


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
