"""A campaign's last discounts, raced for by many uses at once, are taken without a deadlock.

loyalty_take_campaign_slot first looks for one free slot that holds enough, with a locking
read that skips locked rows; when none does, it locks every slot in slot order. A locking
read that meets a row changed since its snapshot skips it and keeps it locked all the same,
so a use that found nothing could hold such stray locks, in random order, while it locked
the rest in slot order: two such uses deadlocked, each stalled for deadlock_timeout (1 s),
and the loser's whole use was undone. Before the mend this race met a deadlock in about one
round of three (3 to 54 of them in a round, up to 26 s of stalls); the stray locks are now
released before the ordered locking."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import TEST_ENV
from tests.fixtures.loyalty import LoyaltyTestServer

CLIENTS = 24
ROUNDS = 20
SLOTS = 32
DISCOUNT = 2990
USES = 300  # the budget, in whole discounts: spread over the slots, so they run thin


@pytest.fixture
async def pool(loyalty_server: LoyaltyTestServer) -> AsyncIterator[asyncpg.Pool]:
    """Plain connections of their own (no retry of a conflict: each one is counted)."""
    pool = await asyncpg.create_pool(
        TEST_ENV["LOYALTY_DATABASE_URL"], min_size=CLIENTS, max_size=CLIENTS
    )
    yield pool
    await pool.close()


async def _campaign(pool: asyncpg.Pool) -> uuid.UUID:
    campaign = uuid.uuid4()
    budget = USES * DISCOUNT
    await pool.execute(
        "INSERT INTO campaigns (campaign_id, name, kind, discount_kind, discount_value,"
        " budget_minor, status) VALUES ($1, 'slot locks', 'CAMPAIGN', 'PERCENT_OFF', 10, $2,"
        " 'ENDED')",
        campaign,
        budget,
    )
    each = budget // SLOTS
    await pool.executemany(
        "INSERT INTO campaign_slots (campaign_id, slot, uses_left, budget_left_minor)"
        " VALUES ($1, $2, NULL, $3)",
        [(campaign, n, each + (budget - each * SLOTS if n == 0 else 0)) for n in range(SLOTS)],
    )
    return campaign


async def _race(pool: asyncpg.Pool, campaign: uuid.UUID) -> tuple[int, list[BaseException]]:
    """Each client takes a discount, one transaction at a time, until the budget is short."""
    taken: list[int] = []

    async def client() -> None:
        async with pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    slot = await conn.fetchval(
                        "SELECT loyalty_take_campaign_slot($1, $2)", campaign, DISCOUNT
                    )
                if slot == -2:
                    return
                taken.append(slot)

    outcomes = await asyncio.gather(*(client() for _ in range(CLIENTS)), return_exceptions=True)
    return len(taken), [o for o in outcomes if isinstance(o, BaseException)]


async def test_racing_uses_spend_a_thin_budget_exactly_and_never_deadlock(
    pool: asyncpg.Pool,
) -> None:
    for _ in range(ROUNDS):
        campaign = await _campaign(pool)
        taken, errors = await _race(pool, campaign)
        assert errors == [], errors  # a deadlock victim's DeadlockDetectedError, say
        left = await pool.fetchval(
            "SELECT sum(budget_left_minor) FROM campaign_slots WHERE campaign_id = $1", campaign
        )
        assert (taken, left) == (USES, 0)
