"""UserAdminService, the outbox, password upgrades and the login rate limit."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
from passlib.context import CryptContext

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.events.v1 import events_pb2
from tests.fixtures.auth import (
    PASSWORD,
    AuthTestServer,
    auth_settings,
    start_auth,
    stop_auth,
    unique_email,
)
from tests.grpc_helpers import bad_request_fields, reason_of, rejected

Code = grpc.StatusCode


async def _outbox(server: AuthTestServer, user_id: str) -> list[tuple[str, events_pb2.UserEvent]]:
    rows = await server.app.pool.fetch(
        "SELECT routing_key, payload FROM outbox WHERE user_id = $1 ORDER BY id", user_id
    )
    return [(r["routing_key"], events_pb2.UserEvent.FromString(r["payload"])) for r in rows]


async def test_admin_blocks_and_unblocks_with_versions_and_events(
    auth_server: AuthTestServer,
) -> None:
    admin = await auth_server.new_admin()
    user = await auth_server.new_user()
    block = auth_pb2.SetUserStatusRequest(
        user_id=user.user_id, status=auth_pb2.USER_STATUS_BLOCKED, reason="fraud"
    )
    blocked = await auth_server.admin.SetUserStatus(block, metadata=admin.metadata())
    assert (blocked.status, blocked.version) == (auth_pb2.USER_STATUS_BLOCKED, 2)
    # Blocking revokes sessions: login, refresh and the old access token are all refused.
    assert await reason_of(auth_server.login(user.email), Code.PERMISSION_DENIED) == "USER_BLOCKED"
    refresh = auth_server.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=user.refresh_token))
    await rejected(refresh, Code.UNAUTHENTICATED)
    old = auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=user.metadata())
    await rejected(old, Code.UNAUTHENTICATED)
    unblock = auth_pb2.SetUserStatusRequest(
        user_id=user.user_id, status=auth_pb2.USER_STATUS_ACTIVE
    )
    active = await auth_server.admin.SetUserStatus(unblock, metadata=admin.metadata())
    assert active.version == 3
    await auth_server.login(user.email)
    events = await _outbox(auth_server, user.user_id)
    assert [key for key, _ in events] == [
        "user.registered",
        "user.status_changed",
        "user.status_changed",
    ]
    assert [e.version for _, e in events] == [1, 2, 3]
    assert [e.status for _, e in events] == [
        auth_pb2.USER_STATUS_ACTIVE,
        auth_pb2.USER_STATUS_BLOCKED,
        auth_pb2.USER_STATUS_ACTIVE,
    ]
    assert len({e.event_id for _, e in events}) == 3


async def test_setting_the_same_status_changes_nothing(auth_server: AuthTestServer) -> None:
    admin = await auth_server.new_admin()
    user = await auth_server.new_user()
    same = auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=auth_pb2.USER_STATUS_ACTIVE)
    assert (await auth_server.admin.SetUserStatus(same, metadata=admin.metadata())).version == 1
    assert len(await _outbox(auth_server, user.user_id)) == 1


async def test_deletion_writes_an_event_and_is_final(auth_server: AuthTestServer) -> None:
    admin = await auth_server.new_admin()
    user = await auth_server.new_user()
    await auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=user.metadata())
    events = await _outbox(auth_server, user.user_id)
    assert events[-1][1].status == auth_pb2.USER_STATUS_DELETED
    revive = auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=auth_pb2.USER_STATUS_ACTIVE)
    call = auth_server.admin.SetUserStatus(revive, metadata=admin.metadata())
    assert await reason_of(call, Code.FAILED_PRECONDITION) == "USER_DELETED"


def _status(value: int) -> Any:
    """A raw enum number, unknown ones included (proto3 keeps them)."""
    return value


async def test_malformed_admin_requests(auth_server: AuthTestServer) -> None:
    admin = await auth_server.new_admin()
    user = await auth_server.new_user()
    meta = admin.metadata()
    cases = [
        (auth_pb2.SetUserStatusRequest(user_id="nope", status=_status(1)), {"user_id"}),
        (auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=_status(0)), {"status"}),
        (auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=_status(3)), {"status"}),
        (auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=_status(42)), {"status"}),
    ]
    for request, fields in cases:
        error = await rejected(
            auth_server.admin.SetUserStatus(request, metadata=meta), Code.INVALID_ARGUMENT
        )
        assert bad_request_fields(error) == fields
    for size in (-1, 1001):
        call = auth_server.admin.ListUsers(auth_pb2.ListUsersRequest(page_size=size), metadata=meta)
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == {"page_size"}
    bad_token = auth_server.admin.ListUsers(
        auth_pb2.ListUsersRequest(page_token="garbage!"), metadata=meta
    )
    assert bad_request_fields(await rejected(bad_token, Code.INVALID_ARGUMENT)) == {"page_token"}


async def test_unknown_user_is_not_found(auth_server: AuthTestServer) -> None:
    admin = await auth_server.new_admin()
    missing = "00000000-0000-4000-8000-000000000000"
    call = auth_server.admin.GetUser(
        auth_pb2.GetUserRequest(user_id=missing), metadata=admin.metadata()
    )
    assert await reason_of(call, Code.NOT_FOUND) == "USER_NOT_FOUND"


async def test_admin_methods_need_the_admin_role(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    request = auth_pb2.GetUserRequest(user_id=user.user_id)
    await rejected(
        auth_server.admin.GetUser(request, metadata=user.metadata()), Code.PERMISSION_DENIED
    )
    await rejected(auth_server.admin.GetUser(request), Code.UNAUTHENTICATED)


async def test_get_and_list_users_page_through_everyone(auth_server: AuthTestServer) -> None:
    admin = await auth_server.new_admin()
    made = {(await auth_server.new_user()).user_id for _ in range(5)}
    got = await auth_server.admin.GetUser(
        auth_pb2.GetUserRequest(user_id=next(iter(made))), metadata=admin.metadata()
    )
    assert got.user_id in made
    seen: list[str] = []
    token = ""
    while True:
        page = await auth_server.admin.ListUsers(
            auth_pb2.ListUsersRequest(page_size=2, page_token=token), metadata=admin.metadata()
        )
        assert len(page.users) <= 2
        seen += [u.user_id for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert made <= set(seen)
    assert len(seen) == len(set(seen))


async def test_create_admin_is_idempotent_and_promotes(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    promoted = await auth_server.app.accounts.create_admin(user.email, PASSWORD)
    again = await auth_server.app.accounts.create_admin(user.email, PASSWORD)
    assert promoted.user_id == again.user_id == user.user_id
    assert promoted.role.value == "admin"


async def test_old_password_hashes_are_upgraded_on_login(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    legacy = CryptContext(schemes=["pbkdf2_sha256"]).hash(PASSWORD)
    pool: asyncpg.Pool = auth_server.app.pool
    await pool.execute(
        "UPDATE users SET password_hash = $2 WHERE user_id = $1", user.user_id, legacy
    )
    await auth_server.login(user.email)
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE user_id = $1", user.user_id)
    assert stored.startswith("$argon2id$")


@pytest.fixture
async def limited_auth() -> object:
    server = await start_auth(
        auth_settings(auth_login_limit_per_email=3, auth_login_limit_per_address=1000)
    )
    yield server
    await stop_auth(server)


async def test_login_attempts_are_rate_limited(limited_auth: AuthTestServer) -> None:
    email = unique_email("limited")
    await limited_auth.auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD))
    for _ in range(3):
        await rejected(limited_auth.login(email, "wrong password"), Code.UNAUTHENTICATED)
    call = limited_auth.login(email, PASSWORD)
    assert await reason_of(call, Code.RESOURCE_EXHAUSTED) == "TOO_MANY_LOGIN_ATTEMPTS"
    # Another email from the same address is still served.
    other = await limited_auth.new_user()
    assert other.access_token
