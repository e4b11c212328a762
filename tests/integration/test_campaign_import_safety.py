"""Import and export, strict and safe, over HTTP: each row is judged alone (ranges, ASCII
digits, times the database can hold), a repeated column refuses the file, formula cells are
neutralised on export and come back as they were, an import over an existing code is that
row's error, and an export imports again as is."""

from __future__ import annotations

import csv
import io
import uuid

import httpx

from tests.fixtures.auth import TestUser
from tests.integration.test_gateway_http import bearer

HEADER = "code,percent_off,max_uses,per_user_limit,budget_minor,ends_at,description,all_users\n"


async def _import(http: httpx.AsyncClient, admin: TestUser, body: str) -> httpx.Response:
    return await http.post(
        "/v1/admin/promocodes:import",
        content=body.encode(),
        headers=bearer(admin.access_token) | {"Content-Type": "text/csv"},
    )


async def _export(http: httpx.AsyncClient, admin: TestUser, query: str) -> str:
    response = await http.get(
        "/v1/admin/promocodes:export", params={"query": query}, headers=bearer(admin.access_token)
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return response.text


async def test_a_mixed_file_is_judged_row_by_row(http: httpx.AsyncClient, admin: TestUser) -> None:
    p = f"IMP{uuid.uuid4().hex[:6].upper()}"
    body = HEADER + (
        f"{p}-GOOD1,10,5,1,100000,2031-01-01T00:00:00Z,plain,true\n"
        f"{p}-BIGUSE,10,99999999999,1,,,,true\n"  # past an int column
        f"{p}-BIGMONEY,10,,1,99999999999999999999999,,,true\n"  # past a bigint
        f"{p}-ARABIC,\u0661\u0660,,1,,,,true\n"  # Arabic-Indic "10": int() would take it
        f"{p}-YEAR,10,,1,,12345-01-01T00:00:00Z,,true\n"  # a time the database cannot hold
        f'{p}-FORMULA,10,,1,,,"=HYPERLINK(""http://x"")",true\n'
        f"{p}-GOOD1,20,,1,,,again,true\n"  # over an existing code
        f"{p}-GOOD2,15,,0,,,,true\n"
    )
    response = await _import(http, admin, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    results = {(r["row"], r["code"]): r for r in answer["results"]}
    outcome = {code.removeprefix(p + "-"): r.get("reason", "") for (_, code), r in results.items()}
    assert [r.get("created", False) for r in answer["results"]] == [
        True, False, False, False, False, True, False, True,
    ]  # fmt: skip
    assert outcome["BIGUSE"] == outcome["BIGMONEY"] == outcome["ARABIC"] == "INVALID_ARGUMENT"
    assert outcome["YEAR"] == "INVALID_ARGUMENT"
    assert answer["results"][6]["reason"] == "PROMO_CODE_EXISTS"
    assert "max_uses" in answer["results"][1]["message"]
    assert "ASCII" in answer["results"][3]["message"]
    assert (answer["created"], answer["failed"]) == (3, 5)
    # Nothing half-done: the refused rows left no code behind.
    exported = await _export(http, admin, p)
    codes = [row["code"] for row in csv.DictReader(io.StringIO(exported))]
    assert codes == [f"{p}-FORMULA", f"{p}-GOOD1", f"{p}-GOOD2"]
    # The formula cell went out neutralised...
    assert "'=HYPERLINK" in exported


async def test_export_then_import_round_trips(http: httpx.AsyncClient, admin: TestUser) -> None:
    p = f"RT{uuid.uuid4().hex[:6].upper()}"
    body = HEADER + (
        f'{p}-A,10,3,1,5000,2031-01-01T00:00:00+00:00,"-1 day, @home, +more",true\n'
        f"{p}-B,25,,0,,,=1+1,true\n"
    )
    assert (await _import(http, admin, body)).json()["created"] == 2
    exported = await _export(http, admin, p)
    renamed = exported.replace(f"{p}-", f"{p}X-")
    again = await _import(http, admin, renamed)
    assert again.json()["created"] == 2, again.text
    second = await _export(http, admin, f"{p}X-")
    assert second == renamed  # the same cells, the formula guards included


async def test_a_repeated_column_refuses_the_file(http: httpx.AsyncClient, admin: TestUser) -> None:
    response = await _import(http, admin, "code,percent_off,percent_off\nDUPCOL1,10,20\n")
    assert response.status_code == 400
    assert "named twice" in response.text
