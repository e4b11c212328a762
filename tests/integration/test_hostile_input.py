"""Regression tests: each hostile input of issue 12, which once got INTERNAL or a 500."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser, unique_email
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import bad_request_fields, rejected
from tests.integration.test_gateway_http import bearer, violations
from tests.integration.test_loyalty_promo import new_code

Code = grpc.StatusCode
NUL = "A\x00B"
Call = Callable[[AuthTestServer, LoyaltyTestServer, TestUser, TestUser], Awaitable[Any]]


def _promo(name: str, request: Any, who: str = "user") -> Call:
    async def call(
        auth: AuthTestServer, loyalty: LoyaltyTestServer, user: TestUser, admin: TestUser
    ) -> Any:
        caller = admin if who == "admin" else user
        stub = loyalty.admin if who == "admin" else loyalty.promo
        return await getattr(stub, name)(request, metadata=caller.metadata())

    return call


def _auth(name: str, request: Any) -> Call:
    async def call(
        auth: AuthTestServer, loyalty: LoyaltyTestServer, user: TestUser, admin: TestUser
    ) -> Any:
        return await getattr(auth.auth, name)(request)

    return call


P = promo_pb2
NUL_CASES: list[tuple[str, Call, set[str]]] = [
    ("login email", _auth("Login", auth_pb2.LoginRequest(email=NUL, password="x" * 8)), {"email"}),
    (
        "register email",
        _auth("Register", auth_pb2.RegisterRequest(email=f"a{NUL}@b.c", password="x" * 8)),
        {"email"},
    ),
    (
        "apply code",
        _promo("ApplyPromoCode", P.ApplyPromoCodeRequest(code=NUL, tariff_id="monthly")),
        {"code"},
    ),
    (
        "apply tariff",
        _promo("ApplyPromoCode", P.ApplyPromoCodeRequest(code="X1", tariff_id=NUL)),
        {"tariff_id"},
    ),
    (
        "use request id",
        _promo(
            "UsePromoCode", P.UsePromoCodeRequest(code="X1", tariff_id="monthly", request_id=NUL)
        ),
        {"request_id"},
    ),
    ("get code", _promo("GetPromoCode", P.GetPromoCodeRequest(code=NUL), "admin"), {"code"}),
    (
        "deactivate",
        _promo("DeactivatePromoCode", P.DeactivatePromoCodeRequest(code=NUL), "admin"),
        {"code"},
    ),
    (
        "report",
        _promo("GetPromoCodeReport", P.GetPromoCodeReportRequest(code=NUL), "admin"),
        {"code"},
    ),
    ("assign", _promo("AssignPromoCode", P.AssignPromoCodeRequest(code=NUL), "admin"), {"code"}),
    (
        "admin apply",
        _promo(
            "AdminApplyPromoCode",
            P.AdminApplyPromoCodeRequest(code=NUL, tariff_id="monthly"),
            "admin",
        ),
        {"code"},
    ),
    (
        "list query",
        _promo("ListPromoCodes", P.ListPromoCodesRequest(query=NUL), "admin"),
        {"query"},
    ),
    (
        "rejections",
        _promo("ListRejections", P.ListRejectionsRequest(code=NUL, reason=NUL), "admin"),
        {"code", "reason"},
    ),
    ("group name", _promo("CreateGroup", P.CreateGroupRequest(name=NUL), "admin"), {"name"}),
    (
        "description and tariffs",
        _promo(
            "CreatePromoCode",
            P.PromoCodeSpec(percent_off=5, description=NUL, tariff_ids=[NUL]),
            "admin",
        ),
        {"description", "tariff_ids[0]"},
    ),
]


@pytest.fixture(scope="module")
async def user(auth_server: AuthTestServer) -> TestUser:
    return await auth_server.new_user()


@pytest.mark.parametrize(("name", "call", "fields"), NUL_CASES, ids=[c[0] for c in NUL_CASES])
async def test_nul_in_any_string_is_invalid_argument_naming_the_field(
    auth_server: AuthTestServer,
    loyalty_server: LoyaltyTestServer,
    user: TestUser,
    admin: TestUser,
    name: str,
    call: Call,
    fields: set[str],
) -> None:
    error = await rejected(call(auth_server, loyalty_server, user, admin), Code.INVALID_ARGUMENT)
    assert bad_request_fields(error) == fields


async def test_a_lone_surrogate_on_the_wire_is_invalid_argument_naming_the_field(
    loyalty_server: LoyaltyTestServer, user: TestUser
) -> None:
    raw = P.ApplyPromoCodeRequest(code="ab", tariff_id="monthly").SerializeToString()
    call = loyalty_server.channel.unary_unary("/loyalty.promo.v1.PromoService/ApplyPromoCode")
    error = await rejected(
        call(raw.replace(b"ab", b"\xed\xa0"), metadata=user.metadata()), Code.INVALID_ARGUMENT
    )
    assert bad_request_fields(error) == {"code"}


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(-62135596800, 0), (2**62, 0), (-(2**62), 0), (0, -1), (-1, 0)]
)
async def test_times_outside_the_range_are_refused_and_never_stored(
    loyalty_server: LoyaltyTestServer, admin: TestUser, seconds: int, nanos: int
) -> None:
    code = new_code()
    spec = P.PromoCodeSpec(
        code=code, percent_off=5, all_users=True, starts_at=Timestamp(seconds=seconds, nanos=nanos)
    )
    error = await rejected(
        loyalty_server.admin.CreatePromoCode(spec, metadata=admin.metadata()), Code.INVALID_ARGUMENT
    )
    assert bad_request_fields(error) == {"starts_at"}
    missing = loyalty_server.admin.GetPromoCode(
        P.GetPromoCodeRequest(code=code), metadata=admin.metadata()
    )
    await rejected(missing, Code.NOT_FOUND)


async def test_year_one_over_http_is_a_400_and_the_list_still_reads(
    http: httpx.AsyncClient, admin: TestUser
) -> None:
    body = {
        "code": new_code(),
        "percentOff": 5,
        "allUsers": True,
        "startsAt": "0001-01-01T00:00:00Z",
    }
    answer = await http.post("/v1/admin/promocodes", json=body, headers=bearer(admin.access_token))
    assert answer.status_code == 400 and violations(answer) == {"starts_at"}
    listed = await http.get("/v1/admin/promocodes", headers=bearer(admin.access_token))
    assert listed.status_code == 200


def _unsigned(cursor: dict[str, Any]) -> str:
    """A page token as the services once made them: base64 JSON anyone could write."""
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()


async def test_hand_made_page_tokens_are_invalid_argument(
    loyalty_server: LoyaltyTestServer, user: TestUser, admin: TestUser
) -> None:
    group = await loyalty_server.admin.CreateGroup(
        P.CreateGroupRequest(name=f"tokens {uuid.uuid4().hex[:6]}"), metadata=admin.metadata()
    )
    cases = [
        (
            loyalty_server.admin.ListPromoCodes,
            P.ListPromoCodesRequest(page_token=_unsigned({"after": 5})),
            admin,
        ),
        (
            loyalty_server.admin.ListGroups,
            P.ListGroupsRequest(page_token=_unsigned({"after": [1]})),
            admin,
        ),
        (
            loyalty_server.admin.ListGroupMembers,
            P.ListGroupMembersRequest(
                group_id=group.group_id, page_token=_unsigned({"after": "x"})
            ),
            admin,
        ),
        (
            loyalty_server.admin.ListRejections,
            P.ListRejectionsRequest(page_token=_unsigned({"before": 2**70})),
            admin,
        ),
        (
            loyalty_server.promo.ListMyPurchases,
            P.ListMyPurchasesRequest(
                page_token=_unsigned({"t": "9999-12-31T23:59:59-14:00", "id": str(uuid.uuid4())})
            ),
            user,
        ),
        (
            loyalty_server.promo.ListActivePromoCodes,
            P.ListActivePromoCodesRequest(page_token="A" * 40),
            user,
        ),
    ]
    for method, request, caller in cases:
        error = await rejected(method(request, metadata=caller.metadata()), Code.INVALID_ARGUMENT)
        assert bad_request_fields(error) == {"page_token"}


async def test_a_page_token_of_one_list_is_refused_by_another(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    for _ in range(2):
        await loyalty_server.admin.CreateGroup(
            P.CreateGroupRequest(name=f"pair {uuid.uuid4().hex[:6]}"), metadata=admin.metadata()
        )
    page = await loyalty_server.admin.ListGroups(
        P.ListGroupsRequest(page_size=1), metadata=admin.metadata()
    )
    assert page.next_page_token
    other = loyalty_server.admin.ListPromoCodes(
        P.ListPromoCodesRequest(page_token=page.next_page_token), metadata=admin.metadata()
    )
    assert bad_request_fields(await rejected(other, Code.INVALID_ARGUMENT)) == {"page_token"}


@pytest.mark.parametrize("length", [129, 4097, 100_000])
async def test_over_long_passwords_are_invalid_argument_on_login_and_register(
    auth_server: AuthTestServer, length: int
) -> None:
    for call in (
        auth_server.auth.Login(auth_pb2.LoginRequest(email=unique_email(), password="p" * length)),
        auth_server.auth.Register(
            auth_pb2.RegisterRequest(email=unique_email(), password="p" * length)
        ),
    ):
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == {"password"}


async def test_json_nested_5000_deep_is_a_400_status(http: httpx.AsyncClient) -> None:
    body = '{"email":' + "[" * 5000 + "]" * 5000 + "}"
    answer = await http.post("/v1/auth/login", content=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == 3 and violations(answer)


async def test_json_of_a_wrong_canonical_type_is_a_400(http: httpx.AsyncClient) -> None:
    for body in ({"email": 5}, {"email": "a@b.c", "password": ["x"]}):
        answer = await http.post("/v1/auth/login", json=body)
        assert answer.status_code == 400, answer.text
    status = f"/v1/admin/users/{uuid.uuid4()}/status"
    values: list[object] = [{}, [], 1, "USER_STATUS_NOPE"]
    for value in values:
        answer = await http.post(status, json={"status": value})
        assert answer.status_code == 400 and violations(answer) == {"status"}, answer.text
    answer = await http.get("/v1/admin/promocodes", params={"pageSize": "\u0665"})
    assert answer.status_code == 400 and violations(answer) == {"pageSize"}


@pytest.mark.parametrize("size", [5_000, 17 * 1024])
async def test_an_over_large_authorization_header_is_a_431(
    http: httpx.AsyncClient, size: int
) -> None:
    answer = await http.get("/v1/tariffs", headers={"Authorization": "Bearer " + "a" * size})
    assert answer.status_code == 431
    assert answer.json()["code"] == 3


async def test_an_over_large_body_is_a_413_status(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/auth/login", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert answer.status_code == 413 and answer.json()["code"] == 3


@pytest.mark.parametrize("size", [17 * 1024, 100 * 1024])
async def test_over_large_headers_are_a_431_on_a_real_port_too(gateway_url: str, size: int) -> None:
    """uvicorn reads the whole head (its own limit would answer a plain-text 400 first)."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{gateway_url}/v1/tariffs", headers={"Authorization": "Bearer " + "a" * size}
        )
    assert answer.status_code == 431 and answer.json()["code"] == 3


async def test_deep_json_is_a_400_status_on_a_real_port_too(gateway_url: str) -> None:
    body = '{"email":' + "[" * 5000 + "]" * 5000 + "}"
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{gateway_url}/v1/auth/login", content=body)
    assert answer.status_code == 400 and answer.json()["code"] == 3


async def test_a_body_of_whitespace_is_malformed_json_and_no_body_is_an_empty_message(
    http: httpx.AsyncClient, user: TestUser
) -> None:
    cancel = f"/v1/purchases/{uuid.uuid4()}/cancel"
    answer = await http.post(cancel, content=b"\n", headers=bearer(user.access_token))
    assert answer.status_code == 400 and violations(answer) == {"body"}
    empty = await http.post(cancel, content=b"", headers=bearer(user.access_token))
    assert empty.status_code == 404  # parsed, sent on: no such purchase
