"""PromoAdminService against real Postgres: codes, batches, audiences, groups, bulk apply."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import grpc
import pytest

from loyalty_service.domain.codes import CHARSET, DEFAULT_RANDOM_LENGTH
from loyalty_service.use_cases import administration
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import bad_request_fields, reason_of, rejected
from tests.integration.test_loyalty_promo import money, new_code

Code = grpc.StatusCode


async def test_create_get_and_duplicate(loyalty_server: LoyaltyTestServer, admin: TestUser) -> None:
    code = new_code()
    created = await loyalty_server.create_code(
        admin, code=f" {code.lower()} ", amount_off=money(1000), max_uses=3, tariff_ids=["yearly"]
    )
    assert created.code == code
    assert created.status == promo_pb2.PROMO_CODE_STATUS_ACTIVE
    assert (created.uses_taken, created.uses_left, created.spec.per_user_limit) == (0, 3, 1)
    assert created.spec.amount_off == money(1000)
    got = await loyalty_server.admin.GetPromoCode(
        promo_pb2.GetPromoCodeRequest(code=code.lower()), metadata=admin.metadata()
    )
    assert got == created
    again = loyalty_server.admin.CreatePromoCode(
        promo_pb2.PromoCodeSpec(code=code, percent_off=5), metadata=admin.metadata()
    )
    assert await reason_of(again, Code.ALREADY_EXISTS) == "PROMO_CODE_EXISTS"
    missing = loyalty_server.admin.GetPromoCode(
        promo_pb2.GetPromoCodeRequest(code="NOPE-" + code), metadata=admin.metadata()
    )
    assert await reason_of(missing, Code.NOT_FOUND) == "PROMO_CODE_NOT_FOUND"


async def test_an_empty_code_is_generated(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    created = await loyalty_server.create_code(admin, percent_off=20)
    assert len(created.code) == DEFAULT_RANDOM_LENGTH and set(created.code) <= set(CHARSET)
    unlimited = await loyalty_server.create_code(admin, percent_off=20, max_uses=0)
    assert not unlimited.HasField("uses_left")


async def test_invalid_specs_name_each_field(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    Spec = promo_pb2.PromoCodeSpec
    cases = [
        (Spec(code=new_code()), {"discount"}),
        (Spec(code="a b", percent_off=5), {"code"}),
        (Spec(code=new_code(), percent_off=0), {"percent_off"}),
        (Spec(code=new_code(), percent_off=101), {"percent_off"}),
        (
            Spec(code=new_code(), fixed_price=promo_pb2.Money(amount_minor=-1)),
            {"fixed_price.amount_minor"},
        ),
        (
            Spec(code=new_code(), amount_off=promo_pb2.Money(amount_minor=5, currency="USD")),
            {"amount_off.currency"},
        ),
        (
            Spec(code=new_code(), percent_off=5, max_uses=-1, per_user_limit=-1),
            {"max_uses", "per_user_limit"},
        ),
        (Spec(code=new_code(), percent_off=5, user_ids=["x"]), {"user_ids[0]"}),
        (Spec(code=new_code(), percent_off=5, tariff_ids=["monthly", "weekly"]), {"tariff_ids[1]"}),
        (Spec(code=new_code(), percent_off=5, group_ids=[str(uuid.uuid4())]), {"group_ids[0]"}),
    ]
    for spec, fields in cases:
        call = loyalty_server.admin.CreatePromoCode(spec, metadata=admin.metadata())
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == fields
    window = Spec(code=new_code(), percent_off=5)
    window.starts_at.FromSeconds(2_000_000_000)
    window.ends_at.FromSeconds(1_999_999_999)
    call = loyalty_server.admin.CreatePromoCode(window, metadata=admin.metadata())
    assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == {"ends_at"}


async def test_generate_ten_thousand_unique_codes(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    prefix = f"B{uuid.uuid4().hex[:4].upper()}-"
    request = promo_pb2.GeneratePromoCodesRequest(
        # Open to nobody, so the codes stay out of other tests' lists of active codes.
        spec=promo_pb2.PromoCodeSpec(percent_off=10, all_users=False, max_uses=1),
        count=10_000,
        prefix=prefix.lower(),
        length=10,
    )
    made = await loyalty_server.admin.GeneratePromoCodes(request, metadata=admin.metadata())
    assert len(made.codes) == len(set(made.codes)) == 10_000
    for code in made.codes:
        assert code.startswith(prefix) and set(code[len(prefix) :]) <= set(CHARSET)
        assert len(code) == len(prefix) + 10
    stored = await loyalty_server.app.pool.fetchval(
        "SELECT count(*) FROM promo_codes WHERE code LIKE $1", prefix + "%"
    )
    assert stored == 10_000


async def test_generation_retries_collisions_instead_of_failing(
    loyalty_server: LoyaltyTestServer, admin: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real codes (49+ bits) never collide in a test; drawn from 20,000 values, 2 batches of
    # 3,000 collide often enough to exercise the retries.
    def small_space(prefix: str, length: int) -> str:
        return f"{prefix}{secrets.randbelow(20_000):0{length}d}"

    monkeypatch.setattr(administration, "random_code", small_space)
    prefix = f"C{uuid.uuid4().hex[:4].upper()}"
    # Open to nobody, so the 6,000 codes stay out of other tests' lists of active codes.
    spec = promo_pb2.PromoCodeSpec(percent_off=10, all_users=False)
    total: set[str] = set()
    for _ in range(2):
        made = await loyalty_server.admin.GeneratePromoCodes(
            promo_pb2.GeneratePromoCodesRequest(spec=spec, count=3000, prefix=prefix, length=10),
            metadata=admin.metadata(),
        )
        assert len(made.codes) == 3000
        total |= set(made.codes)
    assert len(total) == 6000


async def test_bad_batches(loyalty_server: LoyaltyTestServer, admin: TestUser) -> None:
    spec = promo_pb2.PromoCodeSpec(percent_off=10)
    Req = promo_pb2.GeneratePromoCodesRequest
    cases = [
        (Req(spec=spec, count=0), {"count"}),
        (Req(spec=spec, count=10_001), {"count"}),
        (Req(spec=spec, count=1, length=3), {"length"}),
        (Req(spec=spec, count=1, prefix="no spaces"), {"prefix"}),
        (Req(spec=promo_pb2.PromoCodeSpec(code="X1X", percent_off=1), count=1), {"spec.code"}),
    ]
    for request, fields in cases:
        call = loyalty_server.admin.GeneratePromoCodes(request, metadata=admin.metadata())
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == fields


async def test_list_search_filter_and_page(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    tag = f"L{uuid.uuid4().hex[:6].upper()}"
    for index in range(5):
        await loyalty_server.create_code(admin, code=f"{tag}-{index}", percent_off=5)
    await loyalty_server.admin.DeactivatePromoCode(
        promo_pb2.DeactivatePromoCodeRequest(code=f"{tag}-4"), metadata=admin.metadata()
    )
    seen: list[str] = []
    token = ""
    while True:
        page = await loyalty_server.admin.ListPromoCodes(
            promo_pb2.ListPromoCodesRequest(page_size=2, page_token=token, query=tag.lower()),
            metadata=admin.metadata(),
        )
        seen += [c.code for c in page.promo_codes]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"{tag}-{i}" for i in range(5)]
    deactivated = await loyalty_server.admin.ListPromoCodes(
        promo_pb2.ListPromoCodesRequest(query=tag, status=promo_pb2.PROMO_CODE_STATUS_DEACTIVATED),
        metadata=admin.metadata(),
    )
    assert [c.code for c in deactivated.promo_codes] == [f"{tag}-4"]
    assert deactivated.promo_codes[0].status == promo_pb2.PROMO_CODE_STATUS_DEACTIVATED
    bad = loyalty_server.admin.ListPromoCodes(
        promo_pb2.ListPromoCodesRequest(status=_unknown_status()),
        metadata=admin.metadata(),
    )
    assert bad_request_fields(await rejected(bad, Code.INVALID_ARGUMENT)) == {"status"}


def _unknown_status() -> Any:
    return 99


async def test_groups_and_assignment_open_a_code(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    member, outsider = await auth_server.new_user(), await auth_server.new_user()
    meta = admin.metadata()
    name = f"Group {uuid.uuid4().hex[:6]}"
    group = await loyalty_server.admin.CreateGroup(
        promo_pb2.CreateGroupRequest(name=name), metadata=meta
    )
    dup = loyalty_server.admin.CreateGroup(
        promo_pb2.CreateGroupRequest(name=name.upper()), metadata=meta
    )
    assert await reason_of(dup, Code.ALREADY_EXISTS) == "GROUP_EXISTS"
    change = promo_pb2.GroupMembersRequest(
        group_id=group.group_id, user_ids=[member.user_id, outsider.user_id]
    )
    assert (await loyalty_server.admin.AddGroupMembers(change, metadata=meta)).member_count == 2
    change.user_ids[:] = [outsider.user_id]
    assert (await loyalty_server.admin.RemoveGroupMembers(change, metadata=meta)).member_count == 1
    members = await loyalty_server.admin.ListGroupMembers(
        promo_pb2.ListGroupMembersRequest(group_id=group.group_id), metadata=meta
    )
    assert list(members.user_ids) == [member.user_id]
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=5, all_users=False)
    apply = promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id="monthly")
    for who in (member, outsider):
        call = loyalty_server.promo.ApplyPromoCode(apply, metadata=who.metadata())
        assert await reason_of(call, Code.PERMISSION_DENIED) == "PROMO_CODE_NOT_FOR_USER"
    assigned = await loyalty_server.admin.AssignPromoCode(
        promo_pb2.AssignPromoCodeRequest(code=code, group_ids=[group.group_id]), metadata=meta
    )
    assert list(assigned.spec.group_ids) == [group.group_id]
    await loyalty_server.promo.ApplyPromoCode(apply, metadata=member.metadata())
    call = loyalty_server.promo.ApplyPromoCode(apply, metadata=outsider.metadata())
    assert await reason_of(call, Code.PERMISSION_DENIED) == "PROMO_CODE_NOT_FOR_USER"
    await loyalty_server.admin.AssignPromoCode(
        promo_pb2.AssignPromoCodeRequest(code=code, user_ids=[outsider.user_id]), metadata=meta
    )
    await loyalty_server.promo.ApplyPromoCode(apply, metadata=outsider.metadata())
    unknown = loyalty_server.admin.AddGroupMembers(
        promo_pb2.GroupMembersRequest(group_id=str(uuid.uuid4()), user_ids=[member.user_id]),
        metadata=meta,
    )
    assert await reason_of(unknown, Code.NOT_FOUND) == "GROUP_NOT_FOUND"
    listed = await loyalty_server.admin.ListGroups(promo_pb2.ListGroupsRequest(), metadata=meta)
    assert group.group_id in {g.group_id for g in listed.groups}


async def test_admin_apply_reports_partial_success(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    users = [auth_server.token_for() for _ in range(5)]
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=50, max_uses=3)
    result = await loyalty_server.admin.AdminApplyPromoCode(
        promo_pb2.AdminApplyPromoCodeRequest(
            code=code, tariff_id="monthly", user_ids=[u.user_id for u in users]
        ),
        metadata=admin.metadata(),
    )
    assert [r.user_id for r in result.results] == [u.user_id for u in users]
    outcomes = [r.WhichOneof("outcome") for r in result.results]
    assert outcomes == ["purchase"] * 3 + ["reason"] * 2
    assert {r.reason for r in result.results[3:]} == {"PROMO_CODE_EXHAUSTED"}
    assert {r.purchase.user_id for r in result.results[:3]} == {u.user_id for u in users[:3]}
    report = await loyalty_server.admin.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin.metadata()
    )
    assert (report.uses_taken, report.uses_left) == (3, 0)
    assert dict(report.purchases_by_status) == {"PENDING": 3}
    assert dict(report.rejections_by_reason) == {"PROMO_CODE_EXHAUSTED": 2}


async def test_admin_apply_to_a_group(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    users = [auth_server.token_for() for _ in range(3)]
    meta = admin.metadata()
    group = await loyalty_server.admin.CreateGroup(
        promo_pb2.CreateGroupRequest(name=f"bulk-{uuid.uuid4().hex[:6]}"), metadata=meta
    )
    await loyalty_server.admin.AddGroupMembers(
        promo_pb2.GroupMembersRequest(group_id=group.group_id, user_ids=[u.user_id for u in users]),
        metadata=meta,
    )
    code = new_code()
    await loyalty_server.create_code(admin, code=code, fixed_price=money(0))
    result = await loyalty_server.admin.AdminApplyPromoCode(
        promo_pb2.AdminApplyPromoCodeRequest(
            code=code, tariff_id="yearly", group_ids=[group.group_id]
        ),
        metadata=meta,
    )
    assert {r.user_id for r in result.results} == {u.user_id for u in users}
    assert all(r.purchase.final_price.amount_minor == 0 for r in result.results)
    bad = loyalty_server.admin.AdminApplyPromoCode(
        promo_pb2.AdminApplyPromoCodeRequest(code=code, tariff_id="yearly", user_ids=["x"]),
        metadata=meta,
    )
    assert bad_request_fields(await rejected(bad, Code.INVALID_ARGUMENT)) == {"user_ids[0]"}
