"""The Black Friday story over HTTP through the gateway: a campaign with a money budget and
5,000 generated single-use codes, 200 clients racing on random codes until the budget is
spent. The live discounts add up to the budget exactly (a budget of whole discounts) or never
past it (a budget that is not), each code is used at most once, a pause refuses with its
reason and a resume lets uses through again, and the report adds up to the purchases in SQL."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx

from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.integration.test_gateway_http import bearer, reason

DISCOUNT = 2990  # 10% of the monthly tariff (29,900)
CLIENTS = 200
CODES = 5000


@dataclass
class Race:
    used: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def new_campaign(http: httpx.AsyncClient, admin: TestUser, budget: int) -> str:
    response = await http.post(
        "/v1/admin/campaigns",
        json={
            "name": f"Black Friday {uuid.uuid4().hex[:6]}",
            "rules": {"percentOff": 10, "allUsers": True, "perUserLimit": 0},
            "budget": {"amountMinor": str(budget), "currency": "RUB"},
        },
        headers=bearer(admin.access_token),
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CAMPAIGN_STATUS_ACTIVE"
    return str(response.json()["campaignId"])


async def add_codes(
    http: httpx.AsyncClient, admin: TestUser, campaign: str, count: int
) -> list[str]:
    response = await http.post(
        f"/v1/admin/campaigns/{campaign}/codes",
        json={"generate": {"count": count, "prefix": "BF"}, "maxUsesPerCode": 1},
        headers=bearer(admin.access_token),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    codes: list[str] = response.json()["codes"]
    assert len(set(codes)) == count
    return codes


async def use(http: httpx.AsyncClient, user: TestUser, code: str) -> httpx.Response:
    return await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": "monthly", "requestId": uuid.uuid4().hex},
        headers=bearer(user.access_token),
        timeout=60,
    )


async def client(http: httpx.AsyncClient, user: TestUser, codes: list[str], race: Race) -> None:
    """Random codes until the campaign's budget answers that it is spent."""
    rng = random.Random()
    while True:
        code = rng.choice(codes)
        response = await use(http, user, code)
        if response.status_code == 200:
            race.used.append(code)
            continue
        why = reason(response)
        race.refusals[why] += 1
        if why == "PROMO_CODE_BUDGET_SPENT":
            return
        assert why == "PROMO_CODE_EXHAUSTED", response.text  # a code someone used already


async def run_race(http: httpx.AsyncClient, auth_server: AuthTestServer, codes: list[str]) -> Race:
    race = Race()
    users = [auth_server.token_for(str(uuid.uuid4())) for _ in range(CLIENTS)]
    started = time.monotonic()
    await asyncio.gather(*(client(http, u, codes, race) for u in users))
    race.seconds = time.monotonic() - started
    return race


async def live_discounts(pool: asyncpg.Pool, campaign: str) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(p.discount_minor), 0) AS total FROM purchases p"
        " JOIN promo_codes c ON c.code = p.code WHERE c.campaign_id = $1"
        " AND p.status IN ('PENDING', 'COMPLETED')",
        uuid.UUID(campaign),
    )
    return int(row["n"]), int(row["total"])


async def test_black_friday_budget_is_spent_exactly_by_200_racing_clients(
    http: httpx.AsyncClient,
    admin: TestUser,
    auth_server: AuthTestServer,
    loyalty_server: LoyaltyTestServer,
) -> None:
    budget = 300 * DISCOUNT
    campaign = await new_campaign(http, admin, budget)
    codes = await add_codes(http, admin, campaign, CODES)
    buyer = auth_server.token_for(str(uuid.uuid4()))
    headers = bearer(admin.access_token)

    # Paused, the codes refuse with the reason; resumed, they work again.
    paused = await http.post(f"/v1/admin/campaigns/{campaign}:pause", json={}, headers=headers)
    assert paused.json()["status"] == "CAMPAIGN_STATUS_PAUSED"
    refused = await use(http, buyer, codes[0])
    assert (refused.status_code, reason(refused)) == (400, "PROMO_CODE_CAMPAIGN_PAUSED")
    resumed = await http.post(f"/v1/admin/campaigns/{campaign}:resume", json={}, headers=headers)
    assert resumed.json()["status"] == "CAMPAIGN_STATUS_ACTIVE"

    race = await run_race(http, auth_server, codes)
    pool = loyalty_server.app.pool
    uses, total = await live_discounts(pool, campaign)
    print(
        f"\nBlack Friday race: budget {budget}, live discounts {total}, uses {uses},"
        f" {race.seconds:.1f} s, refusals {dict(race.refusals)}"
    )
    assert total == budget and uses == 300 == len(race.used)
    assert len(set(race.used)) == len(race.used)  # each code at most once
    assert race.refusals["PROMO_CODE_BUDGET_SPENT"] >= CLIENTS

    # The report adds up to the purchases in SQL.
    got = await http.get(f"/v1/admin/campaigns/{campaign}/report", headers=headers)
    assert got.status_code == 200, got.text
    report = got.json()
    assert int(report["uses"]) == uses
    assert int(report["discountGranted"]["amountMinor"]) == total
    assert int(report["budgetSpent"]["amountMinor"]) == budget
    assert int(report["budgetLeft"].get("amountMinor", 0)) == 0
    assert int(report["purchasesByStatus"]["PENDING"]) == uses
    assert (
        int(report["rejectionsByReason"]["PROMO_CODE_BUDGET_SPENT"])
        == race.refusals["PROMO_CODE_BUDGET_SPENT"]
    )
    assert int(report["campaign"]["usesTaken"]) == uses

    # A cancel gives the money back to the campaign, once: one more use fits.
    purchase = await pool.fetchval(
        "SELECT p.purchase_id FROM purchases p JOIN promo_codes c ON c.code = p.code"
        " WHERE c.campaign_id = $1 LIMIT 1",
        uuid.UUID(campaign),
    )
    for _ in range(2):
        cancelled = await http.post(f"/v1/purchases/{purchase}/cancel", json={}, headers=headers)
        assert cancelled.status_code == 200, cancelled.text
    fresh = next(c for c in codes if c not in set(race.used))
    assert (await use(http, buyer, fresh)).status_code == 200
    assert await live_discounts(pool, campaign) == (300, budget)
    last = await use(http, buyer, next(c for c in codes if c not in {fresh, *race.used}))
    assert reason(last) == "PROMO_CODE_BUDGET_SPENT"
    await end_campaign(http, admin, campaign)


async def end_campaign(http: httpx.AsyncClient, admin: TestUser, campaign: str) -> None:
    """The promotion is over: its thousands of codes, open to everyone, leave every user's
    active list (the other tests of the run list theirs)."""
    ended = await http.post(
        f"/v1/admin/campaigns/{campaign}:end", json={}, headers=bearer(admin.access_token)
    )
    assert ended.status_code == 200, ended.text


async def test_a_budget_of_no_whole_number_of_discounts_is_never_exceeded(
    http: httpx.AsyncClient,
    admin: TestUser,
    auth_server: AuthTestServer,
    loyalty_server: LoyaltyTestServer,
) -> None:
    budget = 40 * DISCOUNT + 1234
    campaign = await new_campaign(http, admin, budget)
    codes = await add_codes(http, admin, campaign, 500)
    race = await run_race(http, auth_server, codes)
    uses, total = await live_discounts(loyalty_server.app.pool, campaign)
    assert uses == 40 and total == 40 * DISCOUNT <= budget
    assert len(set(race.used)) == len(race.used) == 40
    await end_campaign(http, admin, campaign)


async def test_an_ended_campaign_answers_inactive_and_stays_ended(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    headers = bearer(admin.access_token)
    campaign = await new_campaign(http, admin, 10 * DISCOUNT)
    named = await http.post(
        f"/v1/admin/campaigns/{campaign}/codes",
        json={"codes": [f"END{uuid.uuid4().hex[:8]}"]},
        headers=headers,
    )
    assert named.status_code == 200, named.text
    [code] = named.json()["codes"]
    ended = await http.post(f"/v1/admin/campaigns/{campaign}:end", json={}, headers=headers)
    assert ended.json()["status"] == "CAMPAIGN_STATUS_ENDED"
    refused = await use(http, auth_server.token_for(str(uuid.uuid4())), code)
    assert reason(refused) == "PROMO_CODE_INACTIVE"
    again = await http.post(f"/v1/admin/campaigns/{campaign}:resume", json={}, headers=headers)
    assert again.status_code == 400 and reason(again) == "CAMPAIGN_ENDED"
    audit = await http.get(f"/v1/admin/campaigns/{campaign}/audit", headers=headers)
    actions = [(e["action"], e["actorId"]) for e in audit.json()["entries"]]
    assert actions == [
        ("CREATED", admin.user_id),
        ("CODES_ADDED", admin.user_id),
        ("ENDED", admin.user_id),
    ]
