"""The referral story over HTTP through the gateway, in front of the real auth and loyalty."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fixtures.auth import TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.integration.test_gateway_http import bearer, login, reason, violations

PROGRAM: dict[str, Any] = {
    "enabled": True,
    "referee": {"percentOff": 20},
    "reward": {"amountOff": {"amountMinor": 5000, "currency": "RUB"}},
    "rewardValidDays": 14,
    "maxRewardsPerReferrer": 0,
    "rewardHoldSeconds": "0",
    "maxRewardsPerReferrerPerDay": 0,
}


async def _rewards(http: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    active = await http.get("/v1/promocodes/active", headers=auth)
    assert active.status_code == 200, active.text
    codes: list[dict[str, Any]] = active.json().get("promoCodes", [])
    return [c for c in codes if c.get("description") == "referral reward"]


async def test_the_referral_story_over_http(
    http: httpx.AsyncClient, loyalty_server: LoyaltyTestServer, admin: TestUser, settler: TestUser
) -> None:
    admin_auth = bearer(admin.access_token)
    put = await http.put("/v1/admin/referral-program", json=PROGRAM, headers=admin_auth)
    assert put.status_code == 200, put.text
    got = await http.get("/v1/admin/referral-program", headers=admin_auth)
    # int64 amounts come back as strings (the proto3 JSON mapping).
    assert got.json() == {
        **PROGRAM,
        "reward": {"amountOff": {"amountMinor": "5000", "currency": "RUB"}},
    }
    _, alice_tokens = await login(http)
    _, bob_tokens = await login(http)
    alice, bob = bearer(alice_tokens["accessToken"]), bearer(bob_tokens["accessToken"])

    mine = await http.get("/v1/referral", headers=alice)
    assert mine.status_code == 200, mine.text
    code = mine.json()["code"]
    assert (await http.get("/v1/referral", headers=alice)).json()["code"] == code
    own = await http.post(
        "/v1/promocodes/apply", json={"code": code, "tariffId": "monthly"}, headers=alice
    )
    assert (own.status_code, reason(own)) == (400, "REFERRAL_SELF_USE")

    quote = await http.post(
        "/v1/promocodes/apply", json={"code": code, "tariffId": "monthly"}, headers=bob
    )
    assert quote.json()["finalPrice"] == {"amountMinor": "23920", "currency": "RUB"}
    used = await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": "monthly", "requestId": "bob-1"},
        headers=bob,
    )
    assert used.json()["status"] == "PURCHASE_STATUS_PENDING"
    purchase_id = used.json()["purchaseId"]
    done = await http.post(f"/v1/purchases/{purchase_id}/confirm", json={}, headers=admin_auth)
    assert done.json()["status"] == "PURCHASE_STATUS_COMPLETED"
    # Alice and Bob both come from 127.0.0.1: a same-address referral, held for review.
    held = await http.get("/v1/admin/referrals:held?pageSize=1000", headers=admin_auth)
    assert held.status_code == 200, held.text
    (mine,) = [r for r in held.json()["referrals"] if r["referralId"] == purchase_id]
    assert (mine["state"], mine["signal"]) == (
        "REFERRAL_REWARD_STATE_HELD_FOR_REVIEW",
        "REFERRAL_SIGNAL_SAME_ADDRESS",
    )
    assert (await http.get("/v1/referral", headers=alice)).json()["rewardsPending"] == "1"
    review = f"/v1/admin/referrals/{purchase_id}:review"
    approved = await http.post(review, json={"approve": True}, headers=admin_auth)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "REFERRAL_REWARD_STATE_ISSUED"
    missing = await http.post(
        "/v1/admin/referrals/00000000-0000-4000-8000-000000000000:review",
        json={"approve": True},
        headers=admin_auth,
    )
    assert (missing.status_code, reason(missing)) == (404, "REFERRAL_NOT_FOUND")
    bad = await http.post("/v1/admin/referrals/nope:review", json={}, headers=admin_auth)
    assert bad.status_code == 400
    denied = await http.get("/v1/admin/referrals:held", headers=bob)
    assert denied.status_code == 403

    deadline = asyncio.get_running_loop().time() + 1.0
    while not (rewards := await _rewards(http, alice)):
        assert asyncio.get_running_loop().time() < deadline, "no reward within a second"
        await asyncio.sleep(0.05)
    (reward,) = rewards
    assert reward["amountOff"] == {"amountMinor": "5000", "currency": "RUB"}
    spent = await http.post(
        "/v1/promocodes/use", json={"code": reward["code"], "tariffId": "monthly"}, headers=alice
    )
    assert spent.json()["finalPrice"] == {"amountMinor": "24900", "currency": "RUB"}
    counts = (await http.get("/v1/referral", headers=alice)).json()
    assert (counts["referredCount"], counts["rewardsIssued"]) == ("1", "1")
    report = await http.get("/v1/admin/referral-report", headers=admin_auth)
    assert report.status_code == 200 and int(report.json()["rewardsIssued"]) >= 1


async def test_referral_routes_refuse_bad_input_and_callers(
    http: httpx.AsyncClient, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    _, tokens = await login(http)
    user = bearer(tokens["accessToken"])
    assert (await http.get("/v1/referral")).status_code == 401
    denied = await http.put("/v1/admin/referral-program", json=PROGRAM, headers=user)
    assert denied.status_code == 403
    bad = await http.put(
        "/v1/admin/referral-program",
        json={**PROGRAM, "referee": {"percentOff": 0}, "rewardValidDays": -1},
        headers=bearer(admin.access_token),
    )
    assert bad.status_code == 400
    assert violations(bad) == {"referee.percent_off", "reward_valid_days"}
    wrong_type = await http.put(
        "/v1/admin/referral-program",
        json={**PROGRAM, "enabled": "maybe"},
        headers=bearer(admin.access_token),
    )
    assert wrong_type.status_code == 400
