"""Export codes as CSV, import them elsewhere: the same codes; a bad row fails alone."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from common.storage.migrations import drop_database
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import PG, RUN_ID
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import (
    LoyaltyTestServer,
    loyalty_settings,
    start_loyalty,
    stop_loyalty,
)
from tests.integration.test_campaign_rules import _stamp
from tests.integration.test_loyalty_promo import money, new_code

FRESH_URL = f"{PG}/loyalty_test_{RUN_ID}_fresh"


@pytest.fixture(scope="module")
async def fresh(auth_server: AuthTestServer) -> AsyncIterator[LoyaltyTestServer]:
    """A second loyalty service on a database of its own, empty but for the tariffs."""
    settings = loyalty_settings(
        auth_server.address, loyalty_database_url=FRESH_URL, loyalty_db_pool_size=4
    )
    server = await start_loyalty(settings)
    yield server
    await stop_loyalty(server)
    await drop_database(FRESH_URL)


async def export(
    loyalty: LoyaltyTestServer, admin: TestUser, query: str, status: int = 0
) -> tuple[str, list[str]]:
    request = promo_pb2.ExportPromoCodesRequest(query=query, status=status)  # type: ignore[arg-type]
    chunks = [c async for c in loyalty.admin.ExportPromoCodes(request, metadata=admin.metadata())]
    assert {c.content_type for c in chunks} == {"text/csv; charset=utf-8"}
    return b"".join(c.data for c in chunks).decode(), [c.data.decode() for c in chunks]


async def import_csv(
    loyalty: LoyaltyTestServer, admin: TestUser, text: str
) -> promo_pb2.ImportPromoCodesResponse:
    answer: promo_pb2.ImportPromoCodesResponse = await loyalty.admin.ImportPromoCodes(
        promo_pb2.ImportPromoCodesRequest(csv=text), metadata=admin.metadata()
    )
    return answer


async def _campaign(loyalty: LoyaltyTestServer, admin: TestUser, prefix: str) -> list[str]:
    user_id = "5b0d1a53-1b8f-4a77-8d43-2f0e7c2f9a10"
    specs: list[dict[str, object]] = [
        {
            "percent_off": 50,
            "duration": promo_pb2.DURATION_REPEATING,
            "duration_periods": 3,
            "budget": money(1_000_000),
            "max_discount": money(20000),
            "starts_at": _stamp(datetime(2026, 1, 1, tzinfo=UTC)),
            "ends_at": _stamp(datetime.now(UTC) + timedelta(days=30)),
            "description": 'Spring, "half" off; 3 months',
        },
        {
            "amount_off": money(5000),
            "min_price": money(100000),
            "first_purchase_only": True,
            "per_user_limit": 0,
            "max_uses": 10,
            "tariff_ids": ["yearly"],
        },
        {
            "fixed_price": money(0),
            "duration": promo_pb2.DURATION_FOREVER,
            "all_users": False,
            "user_ids": [user_id],
        },
    ]
    codes = []
    for number, spec in enumerate(specs):
        spec.setdefault("all_users", True)
        made = await loyalty.admin.CreatePromoCode(
            promo_pb2.PromoCodeSpec(code=f"{prefix}-{number}", **spec),  # type: ignore[arg-type]
            metadata=admin.metadata(),
        )
        codes.append(made.code)
    return codes


def _specs(found: list[promo_pb2.PromoCode]) -> list[promo_pb2.PromoCodeSpec]:
    return [c.spec for c in found]


async def test_export_then_import_into_a_fresh_database_gives_the_same_codes(
    loyalty_server: LoyaltyTestServer, fresh: LoyaltyTestServer, admin: TestUser
) -> None:
    prefix = new_code()
    codes = await _campaign(loyalty_server, admin, prefix)
    text, chunks = await export(loyalty_server, admin, prefix.lower())
    assert chunks[0].startswith("code,percent_off,amount_off_minor,fixed_price_minor,currency,")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["code"] for r in rows] == codes
    assert (rows[0]["duration"], rows[0]["duration_periods"], rows[0]["budget_minor"]) == (
        "REPEATING",
        "3",
        "1000000",
    )
    answer = await import_csv(fresh, admin, text)
    assert (answer.created, answer.failed) == (3, 0)
    assert [(r.row, r.code, r.created) for r in answer.results] == [
        (1, codes[0], True),
        (2, codes[1], True),
        (3, codes[2], True),
    ]
    listing = promo_pb2.ListPromoCodesRequest(query=prefix, page_size=10)
    before = await loyalty_server.admin.ListPromoCodes(listing, metadata=admin.metadata())
    after = await fresh.admin.ListPromoCodes(listing, metadata=admin.metadata())
    assert _specs(list(after.promo_codes)) == _specs(list(before.promo_codes))
    again, _ = await export(fresh, admin, prefix)
    assert again == text


async def test_export_is_filtered_like_the_list_and_streams_in_batches(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    prefix = new_code()
    await _campaign(loyalty_server, admin, prefix)
    await loyalty_server.admin.DeactivatePromoCode(
        promo_pb2.DeactivatePromoCodeRequest(code=f"{prefix}-1"), metadata=admin.metadata()
    )
    text, _ = await export(loyalty_server, admin, prefix, promo_pb2.PROMO_CODE_STATUS_DEACTIVATED)
    assert [r["code"] for r in csv.DictReader(io.StringIO(text))] == [f"{prefix}-1"]
    batch = new_code()
    await loyalty_server.admin.GeneratePromoCodes(
        promo_pb2.GeneratePromoCodesRequest(
            # Open to nobody: 1200 codes for everyone would fill other tests' active pages.
            spec=promo_pb2.PromoCodeSpec(percent_off=5),
            count=1200,
            prefix=batch,
        ),
        metadata=admin.metadata(),
    )
    text, chunks = await export(loyalty_server, admin, batch)
    assert len(list(csv.DictReader(io.StringIO(text)))) == 1200
    assert len(chunks) == 1 + 3  # the header, then batches of 500


async def test_one_bad_row_fails_alone_and_is_named(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    prefix = new_code()
    missing_group = "0d7f1b1e-7b5c-4f1a-9d3e-8c6b5a4f3e2d"
    text = (
        "code,percent_off,amount_off_minor,all_users,group_ids,ends_at\r\n"
        f"{prefix}-A,10,,true,,2030-01-01T00:00:00+03:00\r\n"
        f"{prefix}-B,150,,true,,\r\n"
        f"{prefix}-C,,2000,true,,\r\n"
        f"{prefix}-A,20,,true,,\r\n"
        f"{prefix}-D,10,,false,{missing_group},\r\n"
        f"{prefix}-E,10,,true,,2030-01-01T00:00:00\r\n"
    )
    answer = await import_csv(loyalty_server, admin, text)
    assert (answer.created, answer.failed) == (2, 4)
    outcome = [(r.row, r.code, r.created, r.reason) for r in answer.results]
    assert outcome == [
        (1, f"{prefix}-A", True, ""),
        (2, f"{prefix}-B", False, "INVALID_ARGUMENT"),
        (3, f"{prefix}-C", True, ""),
        (4, f"{prefix}-A", False, "PROMO_CODE_EXISTS"),
        (5, f"{prefix}-D", False, "INVALID_ARGUMENT"),
        (6, f"{prefix}-E", False, "INVALID_ARGUMENT"),
    ]
    messages = [r.message for r in answer.results]
    assert "percent_off" in messages[1] and "group_ids[0]" in messages[4]
    assert "UTC offset" in messages[5]
    made = await loyalty_server.admin.GetPromoCode(
        promo_pb2.GetPromoCodeRequest(code=f"{prefix}-a"), metadata=admin.metadata()
    )
    assert made.spec.ends_at.ToDatetime(UTC) == datetime(2029, 12, 31, 21, tzinfo=UTC)
    assert made.spec.percent_off == 10  # the duplicate row changed nothing
    # Never a half-made code: the row whose audience failed left no code behind.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.admin.GetPromoCode(
            promo_pb2.GetPromoCodeRequest(code=f"{prefix}-D"), metadata=admin.metadata()
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_file_that_is_not_our_csv_is_refused_whole(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    for text in ("", "colour,size\nred,L\n", "percent_off\n5\n"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await import_csv(loyalty_server, admin, text)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    user = auth_server.token_for()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await import_csv(loyalty_server, user, "code,percent_off\nX1,5\n")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await export(loyalty_server, user, "")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
