"""Auth against an attacker: spoofed addresses, guessing, lock-outs, floods, take-overs."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from protogen.loyalty.auth.v1 import auth_pb2
from tests.fixtures.auth import (
    PASSWORD,
    AuthTestServer,
    auth_settings,
    start_auth,
    stop_auth,
    unique_email,
)
from tests.grpc_helpers import bad_request_fields, error_info, reason_of, rejected, retry_delay

Code = grpc.StatusCode


def own_prefix() -> str:
    return f"{os.environ['REDIS_KEY_PREFIX']}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def make_auth() -> AsyncIterator[Any]:
    started: list[AuthTestServer] = []

    async def make(**overrides: Any) -> AuthTestServer:
        # Its own buckets: other tests' failures from 127.0.0.1 must not count here.
        overrides.setdefault("redis_key_prefix", own_prefix())
        started.append(await start_auth(auth_settings(**overrides)))
        return started[-1]

    yield make
    for server in started:
        await stop_auth(server)


def from_address(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-forwarded-for", address),)


async def login(server: AuthTestServer, email: str, password: str, address: str) -> Any:
    request = auth_pb2.LoginRequest(email=email, password=password)
    return await server.auth.Login(request, metadata=from_address(address))


async def register(server: AuthTestServer, email: str, address: str = "203.0.113.1") -> Any:
    request = auth_pb2.RegisterRequest(email=email, password=PASSWORD)
    return await server.auth.Register(request, metadata=from_address(address))


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(make_auth: Any) -> None:
    server = await make_auth(auth_login_limit_per_address=5)
    outcomes = []
    for attempt in range(8):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await login(server, unique_email("spoof"), "wrong password", f"198.51.100.{attempt}")
        outcomes.append(failed.value.code())
    assert outcomes == [Code.UNAUTHENTICATED] * 5 + [Code.RESOURCE_EXHAUSTED] * 3


async def test_the_forwarded_for_of_a_trusted_peer_is_believed(make_auth: Any) -> None:
    server = await make_auth(auth_login_limit_per_address=5, auth_trusted_peers="127.0.0.0/8")
    for attempt in range(8):  # eight clients behind one gateway: each has its own budget
        await rejected(
            login(server, unique_email("fwd"), "wrong", f"198.51.100.{attempt}"),
            Code.UNAUTHENTICATED,
        )
    for _ in range(5):
        await rejected(login(server, unique_email(), "wrong", "192.0.2.9"), Code.UNAUTHENTICATED)
    call = login(server, unique_email(), "wrong", "192.0.2.9")
    assert await reason_of(call, Code.RESOURCE_EXHAUSTED) == "TOO_MANY_LOGIN_ATTEMPTS"


async def test_successes_cost_nothing_one_success_and_nine_typos_do_not_lock(
    make_auth: Any,
) -> None:
    server = await make_auth(
        auth_login_limit_per_email_address=10,
        auth_login_limit_per_email=50,
        # As before this change: 10 attempts per email counted every login.
        auth_login_window_seconds=60,
    )
    user = await server.new_user()
    for _ in range(9):
        await rejected(server.login(user.email, "a typo of it"), Code.UNAUTHENTICATED)
    pair = await server.login(user.email)
    assert pair.access_token


async def test_the_login_limit_tells_the_real_time_left(make_auth: Any) -> None:
    # 3 failures per 600 s: a token comes back every 200 s.
    server = await make_auth(auth_login_limit_per_email_address=3, auth_login_window_seconds=600)
    user = await server.new_user()
    for _ in range(3):
        await rejected(server.login(user.email, "wrong password"), Code.UNAUTHENTICATED)
    error = await rejected(server.login(user.email), Code.RESOURCE_EXHAUSTED)
    assert error_info(error).reason == "TOO_MANY_LOGIN_ATTEMPTS"
    delay = retry_delay(error)
    assert 100 < delay <= 200
    assert f"try again in {delay} seconds" in (error.details() or "")


async def test_a_stranger_cannot_lock_the_owner_out(make_auth: Any) -> None:
    server = await make_auth(
        auth_trusted_peers="127.0.0.1",
        auth_login_limit_per_email_address=3,
        auth_login_limit_per_email=20,
    )
    owner = await server.new_user()
    for _ in range(3):
        await rejected(login(server, owner.email, "guess", "198.51.100.7"), Code.UNAUTHENTICATED)
    for _ in range(8):  # the stranger goes on, and is throttled
        await rejected(login(server, owner.email, "guess", "198.51.100.7"), Code.RESOURCE_EXHAUSTED)
    pair = await login(server, owner.email, PASSWORD, "192.0.2.44")
    assert pair.access_token


async def test_guessing_spread_over_many_addresses_hits_the_per_email_ceiling(
    make_auth: Any,
) -> None:
    server = await make_auth(
        auth_trusted_peers="127.0.0.1",
        auth_login_limit_per_email_address=3,
        auth_login_limit_per_email=6,
    )
    owner = await server.new_user()
    for attempt in range(6):
        address = f"198.51.100.{attempt}"
        await rejected(login(server, owner.email, "guess", address), Code.UNAUTHENTICATED)
    call = login(server, owner.email, "guess", "198.51.100.200")
    error = await rejected(call, Code.RESOURCE_EXHAUSTED)
    assert error_info(error).reason == "TOO_MANY_LOGIN_ATTEMPTS"
    assert retry_delay(error) >= 1


async def test_registrations_are_limited_per_client_address(make_auth: Any) -> None:
    server = await make_auth(auth_trusted_peers="127.0.0.1", auth_register_limit_per_address=3)
    for _ in range(3):
        await register(server, unique_email("flood"), "198.51.100.66")
    flood = [register(server, unique_email("flood"), "198.51.100.66") for _ in range(20)]
    for call in flood:
        error = await rejected(call, Code.RESOURCE_EXHAUSTED)
        assert error_info(error).reason == "TOO_MANY_REGISTRATIONS"
        assert retry_delay(error) >= 1
    assert (await register(server, unique_email("other"), "192.0.2.1")).user_id


async def test_create_admin_on_a_taken_email_sets_the_password_and_ends_sessions(
    auth_server: AuthTestServer,
) -> None:
    squatter = await auth_server.new_user(unique_email("squat"))
    operator_password = "operator's own passphrase"
    admin = await auth_server.app.accounts.create_admin(squatter.email, operator_password)
    assert admin.user_id == squatter.user_id and admin.role.value == "admin"
    await rejected(auth_server.login(squatter.email, PASSWORD), Code.UNAUTHENTICATED)
    assert (await auth_server.login(squatter.email, operator_password)).access_token
    refresh = auth_pb2.RefreshRequest(refresh_token=squatter.refresh_token)
    await rejected(auth_server.auth.Refresh(refresh), Code.UNAUTHENTICATED)
    await rejected(
        auth_server.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(), metadata=squatter.metadata()
        ),
        Code.UNAUTHENTICATED,
    )


@pytest.mark.parametrize(
    "look_alike",
    [
        "\uff41lice-{n}@example.com",  # fullwidth a: the same address once normalised (NFKC)
        "ALICE-{n}@EXAMPLE.COM",
    ],
)
async def test_look_alike_emails_are_the_same_account(
    auth_server: AuthTestServer, look_alike: str
) -> None:
    n = unique_email("x").split("@")[0]
    await auth_server.auth.Register(
        auth_pb2.RegisterRequest(email=f"alice-{n}@example.com", password=PASSWORD)
    )
    call = auth_server.auth.Register(
        auth_pb2.RegisterRequest(email=look_alike.format(n=n), password=PASSWORD)
    )
    assert await reason_of(call, Code.ALREADY_EXISTS) == "EMAIL_TAKEN"


@pytest.mark.parametrize(
    "email",
    [
        "\u0430lice@example.com",  # Cyrillic a in the local part
        "alice@ex\u0430mple.com",  # Cyrillic a among Latin letters of the domain
        "alice@localhost",
        "alice@@example.com",
    ],
)
async def test_look_alike_and_malformed_emails_are_refused(
    auth_server: AuthTestServer, email: str
) -> None:
    call = auth_server.auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD))
    assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == {"email"}


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaa",
        "password1",
        "12345678",
        "qwertyuiop",
        "abcdefgh",
        "{local}",
        "my {local} pw",
        "{email}",
    ],
)
async def test_weak_passwords_are_refused(auth_server: AuthTestServer, password: str) -> None:
    email = unique_email("weak")
    local = email.split("@")[0]
    request = auth_pb2.RegisterRequest(
        email=email, password=password.format(local=local, email=email)
    )
    error = await rejected(auth_server.auth.Register(request), Code.INVALID_ARGUMENT)
    assert bad_request_fields(error) == {"password"}
