"""Campaign rules over HTTP: each rule's reason, schedules in JSON, CSV export and import."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from tests.fixtures.auth import AuthTestServer, TestUser
from tests.integration.test_gateway_http import bearer, reason, violations
from tests.integration.test_loyalty_promo import new_code

RUB = "RUB"


def rub(amount: int) -> dict[str, str]:
    return {"amountMinor": str(amount), "currency": RUB}


async def create(http: httpx.AsyncClient, admin: TestUser, **spec: object) -> httpx.Response:
    body = {"code": new_code(), "allUsers": True} | spec
    return await http.post("/v1/admin/promocodes", json=body, headers=bearer(admin.access_token))


async def made(http: httpx.AsyncClient, admin: TestUser, **spec: object) -> str:
    response = await create(http, admin, **spec)
    assert response.status_code == 200, response.text
    code: str = response.json()["code"]
    return code


async def apply(
    http: httpx.AsyncClient, user: TestUser, code: str, tariff: str = "monthly"
) -> httpx.Response:
    return await http.post(
        "/v1/promocodes/apply",
        json={"code": code, "tariffId": tariff},
        headers=bearer(user.access_token),
    )


async def use(
    http: httpx.AsyncClient, user: TestUser, code: str, tariff: str = "monthly"
) -> httpx.Response:
    return await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": tariff, "requestId": new_code()},
        headers=bearer(user.access_token),
    )


@pytest.mark.parametrize(
    ("rules", "schedule"),
    [
        ({}, [(1, 14950), (0, 29900)]),
        ({"duration": "DURATION_ONCE"}, [(1, 14950), (0, 29900)]),
        ({"duration": "DURATION_REPEATING", "durationPeriods": 3}, [(3, 14950), (0, 29900)]),
        ({"duration": "DURATION_FOREVER"}, [(0, 14950)]),
    ],
)
async def test_each_duration_over_http(
    http: httpx.AsyncClient,
    admin: TestUser,
    auth_server: AuthTestServer,
    rules: dict[str, object],
    schedule: list[tuple[int, int]],
) -> None:
    code = await made(http, admin, percentOff=50, **rules)
    user = auth_server.token_for()
    for response in (await apply(http, user, code), await use(http, user, code)):
        assert response.status_code == 200, response.text
        periods = response.json()["schedule"]
        assert [(p["periods"], int(p["price"]["amountMinor"])) for p in periods] == schedule
        assert {p["price"]["currency"] for p in periods} == {RUB}


async def test_each_rule_refuses_with_its_reason_over_http(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = auth_server.token_for()
    first = await made(http, admin, percentOff=50, firstPurchaseOnly=True)
    minimum = await made(http, admin, percentOff=50, minPrice=rub(100000))
    budget = await made(http, admin, percentOff=50, perUserLimit=0, budget=rub(14950))
    assert (await use(http, user, budget)).status_code == 200
    cases = [
        (first, "monthly", "PROMO_CODE_FIRST_PURCHASE_ONLY"),
        (minimum, "monthly", "PROMO_CODE_BELOW_MINIMUM"),
        (budget, "monthly", "PROMO_CODE_BUDGET_SPENT"),
    ]
    for code, tariff, expected in cases:
        for response in (
            await apply(http, user, code, tariff),
            await use(http, user, code, tariff),
        ):
            assert response.status_code == 400, response.text
            assert reason(response) == expected
    capped = await made(http, admin, percentOff=30, maxDiscount=rub(50000))
    quote = (await apply(http, user, capped, "yearly")).json()
    assert (quote["discount"], quote["finalPrice"]) == (rub(50000), rub(249000))
    report = await http.get(
        f"/v1/admin/promocodes/{budget}/report", headers=bearer(admin.access_token)
    )
    body = report.json()
    assert (body["discountGranted"], body["budget"]) == (rub(14950), rub(14950))
    [today] = body["daily"]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert (today["uses"], today["rejections"]) == ("1", "2")


async def test_bad_rules_over_http_name_their_fields(
    http: httpx.AsyncClient, admin: TestUser
) -> None:
    cases: list[tuple[dict[str, object], set[str]]] = [
        ({"percentOff": 101}, {"percent_off"}),
        ({"percentOff": 5, "duration": "DURATION_WEEKLY"}, {"duration"}),
        ({"percentOff": 5, "duration": "DURATION_REPEATING"}, {"duration_periods"}),
        ({"amountOff": rub(5), "maxDiscount": rub(1)}, {"max_discount"}),
        ({"percentOff": 5, "budget": rub(0)}, {"budget.amount_minor"}),
        ({"percentOff": 5, "minPrice": {"amountMinor": "x"}}, {"minPrice.amountMinor"}),
    ]
    for spec, fields in cases:
        response = await create(http, admin, **spec)
        assert response.status_code == 400, response.text
        assert violations(response) == fields, response.json()


async def test_a_window_in_another_time_zone_over_http(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    vladivostok = timezone(timedelta(hours=10))
    ends = (datetime.now(UTC) + timedelta(hours=1)).astimezone(vladivostok).replace(microsecond=0)
    code = await made(http, admin, percentOff=10, endsAt=ends.isoformat())
    assert (await apply(http, auth_server.token_for(), code)).status_code == 200
    got = await http.get(f"/v1/admin/promocodes/{code}", headers=bearer(admin.access_token))
    stored = datetime.fromisoformat(got.json()["spec"]["endsAt"].replace("Z", "+00:00"))
    assert stored == ends


async def test_export_and_import_csv_over_http(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    prefix = new_code()
    admin_auth = bearer(admin.access_token)
    body = (
        "code,percent_off,duration,duration_periods,budget_minor,all_users\n"
        f"{prefix}-1,50,REPEATING,3,1000000,true\n"
        f"{prefix}-2,500,,,,true\n"
        f"{prefix}-3,25,FOREVER,,,true\n"
    )
    imported = await http.post(
        "/v1/admin/promocodes:import",
        content=body.encode(),
        headers=admin_auth | {"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    answer = imported.json()
    assert (answer["created"], answer["failed"]) == (2, 1)
    bad = answer["results"][1]
    assert (bad["row"], bad["code"], bad["created"], bad["reason"]) == (
        2,
        f"{prefix}-2",
        False,
        "INVALID_ARGUMENT",
    )
    assert "percent_off" in bad["message"]
    async with http.stream(
        "GET", "/v1/admin/promocodes:export", params={"query": prefix}, headers=admin_auth
    ) as exported:
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        text = (await exported.aread()).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["code"], r["duration"], r["duration_periods"]) for r in rows] == [
        (f"{prefix}-1", "REPEATING", "3"),
        (f"{prefix}-3", "FOREVER", "0"),
    ]
    active = await http.get(
        "/v1/admin/promocodes:export",
        params={"query": prefix, "status": "PROMO_CODE_STATUS_EXPIRED"},
        headers=admin_auth,
    )
    assert active.text.count("\n") == 1  # the header only


async def test_export_and_import_refusals_are_json_statuses(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = bearer(auth_server.token_for().access_token)
    denied = await http.get("/v1/admin/promocodes:export", headers=user)
    assert denied.status_code == 403 and denied.json()["code"] == 7
    refused = await http.post("/v1/admin/promocodes:import", content=b"code\nX1\n", headers=user)
    assert refused.status_code == 403
    admin_auth = bearer(admin.access_token)
    bad_status = await http.get(
        "/v1/admin/promocodes:export", params={"status": "SOMETIMES"}, headers=admin_auth
    )
    assert bad_status.status_code == 400
    not_utf8 = await http.post(
        "/v1/admin/promocodes:import", content=b"code\n\xff\xfe\n", headers=admin_auth
    )
    assert not_utf8.status_code == 400 and violations(not_utf8) == {"csv"}
    not_ours = await http.post(
        "/v1/admin/promocodes:import", content=b"colour\nred\n", headers=admin_auth
    )
    assert not_ours.status_code == 400 and violations(not_ours) == {"csv"}
    # Larger than gRPC could carry: refused by the gateway with 413, before any backend call.
    huge = b"code\n" + b"X" * 4_000_000
    too_big = await http.post("/v1/admin/promocodes:import", content=huge, headers=admin_auth)
    assert too_big.status_code == 413
    spec = (await http.get("/openapi.json")).json()["paths"]
    assert "text/csv" in spec["/v1/admin/promocodes:export"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in spec["/v1/admin/promocodes:import"]["post"]["requestBody"]["content"]
