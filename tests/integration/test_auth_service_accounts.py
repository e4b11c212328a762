"""Service accounts over gRPC: created, listed, rotated (the old secret lives for the overlap),
deleted (its tokens refused by loyalty within a second); the client-credentials grant, its
refusals and its throttle; service tokens refused by every method written for users; the
`create-service-account` command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.message_factory import GetMessageClass

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import bad_request_fields, reason_of, rejected, retry_delay

Code = grpc.StatusCode
SETTLE = "purchases:settle"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def create(
    server: AuthTestServer,
    admin: TestUser,
    name: str = "billing",
    scopes: tuple[str, ...] = (SETTLE,),
) -> auth_pb2.CreateServiceAccountResponse:
    request = auth_pb2.CreateServiceAccountRequest(name=name, scopes=list(scopes))
    created: auth_pb2.CreateServiceAccountResponse = await server.admin.CreateServiceAccount(
        request, metadata=admin.metadata()
    )
    return created


async def issue(server: AuthTestServer, client_id: str, secret: str) -> auth_pb2.ServiceToken:
    request = auth_pb2.IssueServiceTokenRequest(client_id=client_id, client_secret=secret)
    token: auth_pb2.ServiceToken = await server.auth.IssueServiceToken(request)
    return token


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Polls `check` until it holds; the seconds it took (fails past the deadline)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_create_list_and_a_token_with_the_contract_claims(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    account = created.service_account
    assert (account.name, list(account.scopes), created.client_id) == (
        "billing",
        [SETTLE],
        account.id,
    )
    assert len(created.client_secret) >= 43 and account.created_at.seconds > 0
    stored = await auth_server.app.pool.fetchval(
        "SELECT secret_hash FROM service_account_secrets WHERE account_id = $1", account.id
    )
    assert created.client_secret not in stored  # only the hash is kept
    listed = await auth_server.admin.ListServiceAccounts(
        auth_pb2.ListServiceAccountsRequest(page_size=1000), metadata=admin.metadata()
    )
    assert account.id in {a.id for a in listed.service_accounts}
    token = await issue(auth_server, created.client_id, created.client_secret)
    assert (token.token_type, token.scope, token.expires_in) == ("Bearer", SETTLE, 4 * 3600)
    header = jwt.get_unverified_header(token.access_token)
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert header["kid"] == auth_server.app.accounts.issuer.key.kid
    assert claims["sub"] == f"service:{account.id}" and claims["scope"] == SETTLE
    assert "role" not in claims and {"exp", "iat", "jti"} <= set(claims)


async def test_list_pages_through_accounts(auth_server: AuthTestServer, admin: TestUser) -> None:
    ids = [(await create(auth_server, admin, f"pager {n}")).service_account.id for n in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        page = await auth_server.admin.ListServiceAccounts(
            auth_pb2.ListServiceAccountsRequest(page_size=2, page_token=token),
            metadata=admin.metadata(),
        )
        seen += [a.id for a in page.service_accounts]
        token = page.next_page_token
        if not token:
            break
    assert seen.index(ids[0]) < seen.index(ids[1]) < seen.index(ids[2])
    assert len(seen) == len(set(seen))


async def test_bad_inputs_name_the_field(auth_server: AuthTestServer, admin: TestUser) -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"name": "", "scopes": [SETTLE]}, {"name"}),
        ({"name": "   ", "scopes": [SETTLE]}, {"name"}),
        ({"name": "billing", "scopes": ["purchases:everything"]}, {"scopes[0]"}),
        ({"name": "billing", "scopes": []}, {"scopes"}),
        ({"name": "x" * 101, "scopes": [SETTLE]}, {"name"}),
    ]
    for fields, named in cases:
        call = auth_server.admin.CreateServiceAccount(
            auth_pb2.CreateServiceAccountRequest(**fields), metadata=admin.metadata()
        )
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == named, fields
    for request in (auth_pb2.IssueServiceTokenRequest(client_secret="s"),
                    auth_pb2.IssueServiceTokenRequest(client_id="c")):  # fmt: skip
        error = await rejected(auth_server.auth.IssueServiceToken(request), Code.INVALID_ARGUMENT)
        assert bad_request_fields(error) & {"client_id", "client_secret"}
    rotate = auth_server.admin.RotateServiceAccountSecret(
        auth_pb2.RotateServiceAccountSecretRequest(id="nope"), metadata=admin.metadata()
    )
    assert bad_request_fields(await rejected(rotate, Code.INVALID_ARGUMENT)) == {"id"}
    missing = auth_pb2.DeleteServiceAccountRequest(id="00000000-0000-4000-8000-000000000000")
    call = auth_server.admin.DeleteServiceAccount(missing, metadata=admin.metadata())
    assert await reason_of(call, Code.NOT_FOUND) == "SERVICE_ACCOUNT_NOT_FOUND"


async def test_wrong_credentials_are_invalid_client(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    for client_id, secret in [
        (created.client_id, "not the secret"),
        ("00000000-0000-4000-8000-000000000000", created.client_secret),
        ("not-a-uuid", created.client_secret),
    ]:
        call = issue(auth_server, client_id, secret)
        assert await reason_of(call, Code.UNAUTHENTICATED) == "INVALID_CLIENT"


async def test_only_admins_manage_service_accounts(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    user = auth_server.token_for()
    created = await create(auth_server, admin)
    service = (await issue(auth_server, created.client_id, created.client_secret)).access_token
    some_id = created.service_account.id
    for metadata in (user.metadata(), bearer(service)):
        calls = [
            auth_server.admin.CreateServiceAccount(
                auth_pb2.CreateServiceAccountRequest(name="x", scopes=[SETTLE]), metadata=metadata
            ),
            auth_server.admin.ListServiceAccounts(
                auth_pb2.ListServiceAccountsRequest(), metadata=metadata
            ),
            auth_server.admin.RotateServiceAccountSecret(
                auth_pb2.RotateServiceAccountSecretRequest(id=some_id), metadata=metadata
            ),
            auth_server.admin.DeleteServiceAccount(
                auth_pb2.DeleteServiceAccountRequest(id=some_id), metadata=metadata
            ),
        ]
        for call in calls:
            await rejected(call, Code.PERMISSION_DENIED)
    anonymous = auth_server.admin.ListServiceAccounts(auth_pb2.ListServiceAccountsRequest())
    await rejected(anonymous, Code.UNAUTHENTICATED)


@pytest.fixture
async def short_overlap() -> AsyncIterator[AuthTestServer]:
    server = await start_auth(auth_settings(auth_secret_rotation_overlap_seconds=1.5))
    yield server
    await stop_auth(server)


async def test_rotation_keeps_the_old_secret_for_the_overlap_only(
    short_overlap: AuthTestServer,
) -> None:
    admin = await short_overlap.new_admin()
    created = await create(short_overlap, admin)
    rotated = await short_overlap.admin.RotateServiceAccountSecret(
        auth_pb2.RotateServiceAccountSecretRequest(id=created.client_id), metadata=admin.metadata()
    )
    assert rotated.client_secret != created.client_secret
    # Both work during the overlap...
    await issue(short_overlap, created.client_id, created.client_secret)
    await issue(short_overlap, created.client_id, rotated.client_secret)

    async def old_refused() -> bool:
        try:
            await issue(short_overlap, created.client_id, created.client_secret)
        except grpc.aio.AioRpcError as error:
            assert error.code() == Code.UNAUTHENTICATED
            return True
        return False

    # ...and the old one is refused once it ends, the new one still works.
    took = await until(old_refused, 10)
    assert took > 0.5
    await issue(short_overlap, created.client_id, rotated.client_secret)


async def test_a_second_rotation_does_not_lengthen_the_first_secret(
    short_overlap: AuthTestServer,
) -> None:
    admin = await short_overlap.new_admin()
    created = await create(short_overlap, admin)
    rotate = auth_pb2.RotateServiceAccountSecretRequest(id=created.client_id)
    await short_overlap.admin.RotateServiceAccountSecret(rotate, metadata=admin.metadata())
    expiry = (
        "SELECT expires_at FROM service_account_secrets WHERE account_id = $1"
        " ORDER BY created_at LIMIT 1"
    )
    first = await short_overlap.app.pool.fetchval(expiry, created.client_id)
    # The second rotation's now() is later (each transaction has its own), so a lengthened
    # expiry would differ.
    await short_overlap.admin.RotateServiceAccountSecret(rotate, metadata=admin.metadata())
    assert await short_overlap.app.pool.fetchval(expiry, created.client_id) == first


async def test_deletion_refuses_its_tokens_in_loyalty_within_a_second(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    token = (await issue(auth_server, created.client_id, created.client_secret)).access_token
    purchases = promo_pb2.ListMyPurchasesRequest()
    # Alive, it is a service: loyalty's user methods refuse it as one.
    alive = loyalty_server.promo.ListMyPurchases(purchases, metadata=bearer(token))
    await rejected(alive, Code.PERMISSION_DENIED)
    await auth_server.admin.DeleteServiceAccount(
        auth_pb2.DeleteServiceAccountRequest(id=created.client_id), metadata=admin.metadata()
    )

    async def refused() -> bool:
        try:
            await loyalty_server.promo.ListMyPurchases(purchases, metadata=bearer(token))
        except grpc.aio.AioRpcError as error:
            return bool(error.code() == Code.UNAUTHENTICATED)
        return False

    await until(refused, 1.0)
    # And its credentials give no new token.
    call = issue(auth_server, created.client_id, created.client_secret)
    assert await reason_of(call, Code.UNAUTHENTICATED) == "INVALID_CLIENT"
    listed = await auth_server.admin.ListServiceAccounts(
        auth_pb2.ListServiceAccountsRequest(page_size=1000), metadata=admin.metadata()
    )
    assert created.client_id not in {a.id for a in listed.service_accounts}


async def test_deletion_survives_redis_losing_its_data(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    """The keeper rebuilds the revoked list from PostgreSQL, deleted accounts included."""
    created = await create(auth_server, admin)
    await auth_server.admin.DeleteServiceAccount(
        auth_pb2.DeleteServiceAccountRequest(id=created.client_id), metadata=admin.metadata()
    )
    window = await auth_server.app.keeper._revoked_within(60)
    assert (f"service:{created.client_id}") in {sid for sid, _ in window}


# Methods meant for a user's own token, with a request that passes the field checks.
# A person's methods (ListTariffs is not one: the payment side may read the tariffs too).
USER_METHODS: list[tuple[str, str, Any]] = [
    ("loyalty", "ListMyPurchases", promo_pb2.ListMyPurchasesRequest()),
    ("loyalty", "ListActivePromoCodes", promo_pb2.ListActivePromoCodesRequest()),
    ("loyalty", "GetMyReferralCode", promo_pb2.GetMyReferralCodeRequest()),
    (
        "loyalty",
        "UsePromoCode",
        promo_pb2.UsePromoCodeRequest(code="WELCOME", tariff_id="monthly", request_id="r-1"),
    ),
    ("loyalty", "ApplyPromoCode", promo_pb2.ApplyPromoCodeRequest(code="W", tariff_id="monthly")),
    ("auth", "DeleteAccount", auth_pb2.DeleteAccountRequest()),
]


async def test_a_service_token_cannot_pass_as_a_user(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    token = (await issue(auth_server, created.client_id, created.client_secret)).access_token
    stubs = {"loyalty": loyalty_server.promo, "auth": auth_server.auth}
    for backend, name, request in USER_METHODS:
        call = getattr(stubs[backend], name)(request, metadata=bearer(token))
        await rejected(call, Code.PERMISSION_DENIED)


async def test_no_method_answers_a_service_token_with_an_internal_error(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    """Every unary method of both services, with an empty request and a service token."""
    created = await create(auth_server, admin)
    token = (await issue(auth_server, created.client_id, created.client_secret)).access_token
    channels = {"auth": auth_server.channel, "loyalty": loyalty_server.channel}
    services = [
        (auth_pb2.DESCRIPTOR.services_by_name["AuthService"], "auth"),
        (auth_pb2.DESCRIPTOR.services_by_name["UserAdminService"], "auth"),
        (promo_pb2.DESCRIPTOR.services_by_name["PromoService"], "loyalty"),
        (promo_pb2.DESCRIPTOR.services_by_name["PromoAdminService"], "loyalty"),
    ]
    for service, backend in services:
        for method in service.methods:
            if method.server_streaming or method.name in ("GetJwks", "IssueServiceToken"):
                continue
            if method.name == "ListTariffs":  # open to the payment side too
                continue
            invoke = channels[backend].unary_unary(
                f"/{service.full_name}/{method.name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=GetMessageClass(method.output_type).FromString,
            )
            call = invoke(GetMessageClass(method.input_type)(), metadata=bearer(token))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            allowed = {Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.INVALID_ARGUMENT}
            assert raised.value.code() in allowed, (method.full_name, raised.value)


async def test_failed_grants_count_in_the_login_throttle() -> None:
    server = await start_auth(
        auth_settings(auth_login_limit_per_email_address=3, auth_login_limit_per_email=3)
    )
    try:
        admin = await server.new_admin()
        created = await create(server, admin)
        for _ in range(3):
            call = issue(server, created.client_id, "a guess")
            await rejected(call, Code.UNAUTHENTICATED)
        throttled = await rejected(
            issue(server, created.client_id, created.client_secret), Code.RESOURCE_EXHAUSTED
        )
        assert retry_delay(throttled) >= 1
    finally:
        await stop_auth(server)


async def test_the_command_prints_usable_credentials(auth_server: AuthTestServer) -> None:
    env = {**os.environ, "AUTH_DATABASE_URL": auth_server.app.settings.auth_database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "auth_service", "create-service-account",
        "--name", "billing-cli", "--scope", SETTLE, "--scope", SETTLE,
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    printed = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    token = await issue(auth_server, printed["client_id"], printed["client_secret"])
    assert token.scope == SETTLE  # given twice, held once
    assert "shown this once" in err.decode()


def test_the_command_refuses_an_unknown_scope() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auth_service", "create-service-account",
         "--name", "billing", "--scope", "purchases:everything"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "scopes[0]: unknown scope 'purchases:everything'" in done.stderr
    assert "Traceback" not in done.stderr
