"""The console's people by email: ListUsers' email filter and LookupUsers (admin only, audited)."""

from __future__ import annotations

import uuid

import grpc

from protogen.loyalty.auth.v1 import auth_pb2
from tests.fixtures.auth import AuthTestServer
from tests.grpc_helpers import bad_request_fields, rejected

Code = grpc.StatusCode


async def test_list_users_finds_by_email_prefix_case_insensitively(
    auth_server: AuthTestServer,
) -> None:
    admin = await auth_server.new_admin()
    tag = uuid.uuid4().hex[:10]
    anna = await auth_server.new_user(f"anna.{tag}@example.com")
    annette = await auth_server.new_user(f"annette.{tag}@example.com")
    await auth_server.new_user(f"bob.{tag}@example.com")
    meta = admin.metadata()

    async def found(email: str) -> list[str]:
        page = await auth_server.admin.ListUsers(
            auth_pb2.ListUsersRequest(email=email, page_size=10), metadata=meta
        )
        return [u.user_id for u in page.users]

    assert await found(f"ANNA.{tag}@EXAMPLE.COM") == [anna.user_id]  # exact, any case
    assert await found(f"anna.{tag}") == [anna.user_id]
    assert await found("annette." + tag) == [annette.user_id]
    assert await found(f"bob.{tag}@example.co") != []
    # LIKE's wildcards are taken literally: no one's email starts with "%" or "_".
    assert await found("%") == []
    assert await found(f"ann_.{tag}") == []
    # Paging within the filter.
    first = await auth_server.admin.ListUsers(
        auth_pb2.ListUsersRequest(email="ann", page_size=1), metadata=meta
    )
    assert len(first.users) == 1 and first.next_page_token


async def test_lookup_users_answers_emails_and_none_for_the_deleted(
    auth_server: AuthTestServer,
) -> None:
    admin = await auth_server.new_admin()
    alive = await auth_server.new_user()
    gone = await auth_server.new_user()
    await auth_server.admin.DeleteUser(
        auth_pb2.DeleteUserRequest(user_id=gone.user_id), metadata=admin.metadata()
    )
    unknown = str(uuid.uuid4())
    answer = await auth_server.admin.LookupUsers(
        auth_pb2.LookupUsersRequest(user_ids=[alive.user_id, gone.user_id, unknown, alive.user_id]),
        metadata=admin.metadata(),
    )
    assert {u.user_id: u.email for u in answer.users} == {
        alive.user_id: alive.email,
        gone.user_id: "",
    }
    # Audited: one event per user asked about, under the admin.
    rows = await auth_server.app.pool.fetch(
        "SELECT target FROM audit_events WHERE actor_id = $1 AND method LIKE '%/LookupUsers'",
        admin.user_id,
    )
    assert {r["target"] for r in rows} >= {alive.user_id, gone.user_id}


async def test_lookup_and_filter_are_admin_only_and_check_their_input(
    auth_server: AuthTestServer,
) -> None:
    user = await auth_server.new_user()
    admin = await auth_server.new_admin()
    lookup = auth_pb2.LookupUsersRequest(user_ids=[user.user_id])
    await rejected(
        auth_server.admin.LookupUsers(lookup, metadata=user.metadata()), Code.PERMISSION_DENIED
    )
    await rejected(auth_server.admin.LookupUsers(lookup), Code.UNAUTHENTICATED)
    listing = auth_pb2.ListUsersRequest(email="a")
    await rejected(
        auth_server.admin.ListUsers(listing, metadata=user.metadata()), Code.PERMISSION_DENIED
    )
    meta = admin.metadata()
    bad_id = auth_server.admin.LookupUsers(
        auth_pb2.LookupUsersRequest(user_ids=["not-a-uuid"]), metadata=meta
    )
    assert bad_request_fields(await rejected(bad_id, Code.INVALID_ARGUMENT)) == {"user_ids[0]"}
    too_many = auth_server.admin.LookupUsers(
        auth_pb2.LookupUsersRequest(user_ids=[str(uuid.uuid4()) for _ in range(501)]),
        metadata=meta,
    )
    assert bad_request_fields(await rejected(too_many, Code.INVALID_ARGUMENT)) == {"user_ids"}
    long_email = auth_server.admin.ListUsers(
        auth_pb2.ListUsersRequest(email="a" * 255), metadata=meta
    )
    assert bad_request_fields(await rejected(long_email, Code.INVALID_ARGUMENT)) == {"email"}
    nul = auth_server.admin.ListUsers(auth_pb2.ListUsersRequest(email="a\x00"), metadata=meta)
    await rejected(nul, Code.INVALID_ARGUMENT)
