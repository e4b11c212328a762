"""Personal data (issue 28): deletion erases, the audit trail, the user's own export, and the
retention workers, against the real services and their databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest

from auth_service.jobs import retention as auth_retention
from loyalty_service.jobs import retention as loyalty_retention
from protogen.loyalty.audit.v1 import audit_pb2
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import PASSWORD, AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.fixtures.sync import eventually
from tests.grpc_helpers import reason_of, rejected
from tests.integration.test_loyalty_promo import new_code

Code = grpc.StatusCode
GET_USER = "/loyalty.auth.v1.UserAdminService/GetUser"
SET_STATUS = "/loyalty.auth.v1.UserAdminService/SetUserStatus"
LIST_AUDIT = "/loyalty.auth.v1.UserAdminService/ListAuditEvents"
ADMIN_APPLY = "/loyalty.promo.v1.PromoAdminService/AdminApplyPromoCode"


async def _buy(loyalty: LoyaltyTestServer, admin: TestUser, user: TestUser) -> str:
    code = (await loyalty.create_code(admin, code=new_code(), percent_off=10)).code
    purchase = await loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=user.metadata()
    )
    return str(purchase.purchase_id)


async def _refused(call: object) -> bool:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return bool(error.code() == Code.UNAUTHENTICATED)
    return False


async def test_deletion_erases_and_the_address_can_register_again(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    user = await auth_server.new_user()
    await _buy(loyalty_server, admin, user)
    await auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=user.metadata())

    row = await auth_server.app.pool.fetchrow(
        "SELECT email, password_hash, email_hash, status FROM users WHERE user_id = $1",
        user.user_id,
    )
    assert (row["email"], row["password_hash"], row["status"]) == (None, None, "DELETED")
    assert row["email_hash"] is not None and user.email.encode() not in row["email_hash"]
    live = await auth_server.app.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user.user_id
    )
    assert live == 0
    got = await auth_server.admin.GetUser(
        auth_pb2.GetUserRequest(user_id=user.user_id), metadata=admin.metadata()
    )
    assert got == auth_pb2.User(user_id=user.user_id, status=auth_pb2.USER_STATUS_DELETED)

    # Login with the erased address fails like an unknown one; then it registers anew.
    assert await reason_of(auth_server.login(user.email), Code.UNAUTHENTICATED) == (
        "INVALID_CREDENTIALS"
    )
    again = await auth_server.auth.Register(
        auth_pb2.RegisterRequest(email=user.email, password=PASSWORD)
    )
    assert again.user_id != user.user_id and again.email == user.email

    # The old tokens are refused everywhere.
    export = auth_server.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=user.metadata())
    await rejected(export, Code.UNAUTHENTICATED)
    await eventually(
        lambda: _refused(
            loyalty_server.promo.ListMyPurchases(
                promo_pb2.ListMyPurchasesRequest(), metadata=user.metadata()
            )
        ),
        10,
        "loyalty refuses the deleted user's token",
    )
    refresh = auth_server.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=user.refresh_token))
    assert (await rejected(refresh, Code.UNAUTHENTICATED)).code() == Code.UNAUTHENTICATED


async def test_an_admin_deletes_a_user(auth_server: AuthTestServer, admin: TestUser) -> None:
    user = await auth_server.new_user()
    request = auth_pb2.DeleteUserRequest(user_id=user.user_id)
    await rejected(
        auth_server.admin.DeleteUser(request, metadata=user.metadata()), Code.PERMISSION_DENIED
    )
    await auth_server.admin.DeleteUser(request, metadata=admin.metadata())
    await auth_server.admin.DeleteUser(request, metadata=admin.metadata())  # changes nothing
    email = await auth_server.app.pool.fetchval(
        "SELECT email FROM users WHERE user_id = $1", user.user_id
    )
    assert email is None
    await rejected(
        auth_server.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=user.metadata()),
        Code.UNAUTHENTICATED,
    )
    missing = auth_pb2.DeleteUserRequest(user_id=str(uuid.uuid4()))
    call = auth_server.admin.DeleteUser(missing, metadata=admin.metadata())
    assert await reason_of(call, Code.NOT_FOUND) == "USER_NOT_FOUND"
    await rejected(
        auth_server.admin.DeleteUser(auth_pb2.DeleteUserRequest(), metadata=admin.metadata()),
        Code.INVALID_ARGUMENT,
    )


async def test_the_audit_lists_an_admins_reads_and_changes(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    user, other = await auth_server.new_user(), await auth_server.new_user()
    meta = admin.metadata()
    await auth_server.admin.GetUser(auth_pb2.GetUserRequest(user_id=user.user_id), metadata=meta)
    block = auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=auth_pb2.USER_STATUS_BLOCKED)
    await auth_server.admin.SetUserStatus(block, metadata=meta)
    denied = auth_server.admin.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(), metadata=other.metadata()
    )
    await rejected(denied, Code.PERMISSION_DENIED)

    found = await auth_server.admin.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(target=user.user_id), metadata=meta
    )
    assert [(e.method, e.actor_id, e.outcome) for e in found.events] == [
        (SET_STATUS, admin.user_id, "OK"),
        (GET_USER, admin.user_id, "OK"),
    ]
    assert all(e.client_address == "127.0.0.1" for e in found.events)
    # The refused read of the trail is in it too, under the user who tried.
    mine = await auth_server.admin.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(actor_id=other.user_id), metadata=meta
    )
    assert [(e.method, e.outcome) for e in mine.events] == [(LIST_AUDIT, "PERMISSION_DENIED")]


async def test_the_audit_pages_and_filters_by_time(
    auth_server: AuthTestServer, admin: TestUser
) -> None:
    user = await auth_server.new_user()
    for _ in range(3):
        await auth_server.admin.GetUser(
            auth_pb2.GetUserRequest(user_id=user.user_id), metadata=admin.metadata()
        )
    seen: list[audit_pb2.AuditEvent] = []
    token = ""
    while True:
        page = await auth_server.admin.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(target=user.user_id, page_size=2, page_token=token),
            metadata=admin.metadata(),
        )
        seen += page.events
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 3 and len({e.at.ToNanoseconds() for e in seen}) >= 1
    later = audit_pb2.ListAuditEventsRequest(target=user.user_id)
    later.__getattribute__("from").FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
    none = await auth_server.admin.ListAuditEvents(later, metadata=admin.metadata())
    assert list(none.events) == []
    backwards = audit_pb2.ListAuditEventsRequest()
    getattr(backwards, "from").FromDatetime(datetime.now(UTC))
    backwards.to.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    call = auth_server.admin.ListAuditEvents(backwards, metadata=admin.metadata())
    await rejected(call, Code.INVALID_ARGUMENT)
    bad_token = audit_pb2.ListAuditEventsRequest(page_token="forged")
    call = auth_server.admin.ListAuditEvents(bad_token, metadata=admin.metadata())
    await rejected(call, Code.INVALID_ARGUMENT)


async def test_the_trail_is_append_only(auth_server: AuthTestServer) -> None:
    pool = auth_server.app.pool
    await pool.execute(
        "INSERT INTO audit_events (actor_id, method, outcome) VALUES ('x', 'm', 'OK')"
    )
    for statement in ["UPDATE audit_events SET target = 'y'", "DELETE FROM audit_events"]:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(statement)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("TRUNCATE audit_events")


async def test_loyalty_audits_admin_apply_for_each_user(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    users = [auth_server.token_for(), auth_server.token_for()]
    code = (await loyalty_server.create_code(admin, code=new_code(), percent_off=5)).code
    await loyalty_server.admin.AdminApplyPromoCode(
        promo_pb2.AdminApplyPromoCodeRequest(
            code=code, tariff_id="monthly", user_ids=[u.user_id for u in users]
        ),
        metadata=admin.metadata(),
    )
    for user in users:
        found = await loyalty_server.admin.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(target=user.user_id), metadata=admin.metadata()
        )
        assert [(e.method, e.actor_id, e.outcome) for e in found.events] == [
            (ADMIN_APPLY, admin.user_id, "OK")
        ]
    denied = loyalty_server.admin.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(), metadata=users[0].metadata()
    )
    await rejected(denied, Code.PERMISSION_DENIED)
    anonymous = loyalty_server.admin.ListAuditEvents(audit_pb2.ListAuditEventsRequest())
    await rejected(anonymous, Code.UNAUTHENTICATED)


async def test_each_export_holds_exactly_its_users_data(
    auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    alice, bob = await auth_server.new_user(), await auth_server.new_user()
    bought = {u.user_id: await _buy(loyalty_server, admin, u) for u in (alice, bob)}
    for user in (alice, bob):
        call = loyalty_server.promo.ApplyPromoCode(
            promo_pb2.ApplyPromoCodeRequest(code="NOSUCH" + new_code(), tariff_id="monthly"),
            metadata=user.metadata(),
        )
        await rejected(call, Code.NOT_FOUND)
        await auth_server.admin.GetUser(
            auth_pb2.GetUserRequest(user_id=user.user_id), metadata=admin.metadata()
        )
    for user, other in ((alice, bob), (bob, alice)):
        mine = await auth_server.auth.ExportMyData(
            auth_pb2.ExportMyDataRequest(), metadata=user.metadata()
        )
        assert (mine.account.user_id, mine.account.email) == (user.user_id, user.email)
        assert len(mine.sessions) == 1
        assert [e.target for e in mine.audit_events] == [user.user_id]
        assert other.user_id not in str(mine) and other.email not in str(mine)

        data = await loyalty_server.promo.ExportMyData(
            promo_pb2.ExportMyDataRequest(), metadata=user.metadata()
        )
        assert data.user_id == user.user_id
        assert [p.purchase_id for p in data.purchases] == [bought[user.user_id]]
        assert len(data.rejections) == 1 and data.rejections[0].user_id == user.user_id
        assert other.user_id not in str(data) and bought[other.user_id] not in str(data)
    for stub, request in (
        (auth_server.auth, auth_pb2.ExportMyDataRequest()),
        (loyalty_server.promo, promo_pb2.ExportMyDataRequest()),
    ):
        for metadata in [(), (("authorization", "Bearer not.a.jwt"),)]:
            await rejected(stub.ExportMyData(request, metadata=metadata), Code.UNAUTHENTICATED)


async def _insert_session(pool: asyncpg.Pool, user_id: str, ended: datetime | None) -> str:
    """A session whose expiry is `ended` (or a month ahead), with one refresh token."""
    session_id = str(uuid.uuid4())
    expires = ended or datetime.now(UTC) + timedelta(days=30)
    await pool.execute(
        "INSERT INTO sessions (session_id, user_id, created_at, expires_at)"
        " VALUES ($1, $2, $3::timestamptz - interval '30 days', $3)",
        session_id,
        user_id,
        expires,
    )
    await pool.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, used_at) VALUES ($1, $2, now())",
        uuid.uuid4().hex,
        session_id,
    )
    return session_id


async def test_auth_retention_removes_only_what_is_past_its_period(
    auth_server: AuthTestServer,
) -> None:
    pool = auth_server.app.pool
    now = datetime.now(UTC)
    user = await auth_server.new_user()
    old_session = await _insert_session(pool, user.user_id, now - timedelta(days=31))
    recent_session = await _insert_session(pool, user.user_id, now - timedelta(days=29))
    live_session = await _insert_session(pool, user.user_id, None)
    marker = f"retention-{uuid.uuid4()}"
    for days in (400, 300):
        await pool.execute(
            "INSERT INTO audit_events (at, actor_id, method, target, outcome)"
            " VALUES (now() - make_interval(days => $1), 'a', 'm', $2, 'OK')",
            days,
            marker,
        )
    gone, kept = await auth_server.new_user(), await auth_server.new_user()
    for deleted, days in ((gone, 400), (kept, 300)):
        await auth_server.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(), metadata=deleted.metadata()
        )
        await pool.execute(
            "UPDATE users SET updated_at = now() - make_interval(days => $2) WHERE user_id = $1",
            deleted.user_id,
            days,
        )

    periods = auth_retention.RetentionPeriods(365, 30, 365)
    removed = await auth_retention.retain_once(pool, periods)
    assert removed["audit_events"] >= 1 and removed["sessions"] >= 1

    sessions = await pool.fetch(
        "SELECT session_id::text FROM sessions WHERE session_id = ANY($1::uuid[])",
        [old_session, recent_session, live_session],
    )
    assert {r[0] for r in sessions} == {recent_session, live_session}
    tokens = await pool.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE session_id = $1", old_session
    )
    assert tokens == 0
    ages = await pool.fetch(
        "SELECT extract(day FROM now() - at)::int FROM audit_events WHERE target = $1", marker
    )
    assert [r[0] for r in ages] == [300]
    hashes = await pool.fetch(
        "SELECT user_id::text, email_hash IS NOT NULL FROM users WHERE user_id = ANY($1::uuid[])",
        [gone.user_id, kept.user_id],
    )
    assert dict((r[0], r[1]) for r in hashes) == {gone.user_id: False, kept.user_id: True}


async def test_loyalty_retention_removes_only_what_is_past_its_period(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    pool = loyalty_server.app.pool
    marker = f"retention-{uuid.uuid4()}"
    for days in (400, 300):
        await pool.execute(
            "INSERT INTO audit_events (at, actor_id, method, target, outcome)"
            " VALUES (now() - make_interval(days => $1), 'a', 'm', $2, 'OK')",
            days,
            marker,
        )
    owners = {}
    for days in (100, 80):
        code = (await loyalty_server.create_code(admin, code=new_code(), percent_off=5)).code
        owner = str(uuid.uuid4())
        await pool.execute(
            "INSERT INTO referral_codes (user_id, code, created_at, owner_address_hash)"
            " VALUES ($1, $2, now() - make_interval(days => $3), '\\x01')",
            owner,
            code,
            days,
        )
        owners[owner] = days

    periods = loyalty_retention.RetentionPeriods(365, 90)
    await loyalty_retention.retain_once(pool, periods)

    ages = await pool.fetch(
        "SELECT extract(day FROM now() - at)::int FROM audit_events WHERE target = $1", marker
    )
    assert [r[0] for r in ages] == [300]
    hashes = await pool.fetch(
        "SELECT user_id::text, owner_address_hash IS NOT NULL FROM referral_codes"
        " WHERE user_id = ANY($1::uuid[])",
        list(owners),
    )
    assert {owners[r[0]]: r[1] for r in hashes} == {100: False, 80: True}
