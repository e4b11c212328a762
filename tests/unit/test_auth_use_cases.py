"""Auth's use cases (accounts and sessions) over the in-memory unit of work: what each one
writes, refuses and revokes, without PostgreSQL or Redis."""

from __future__ import annotations

import pytest
from passlib.context import CryptContext

from auth_service import passwords
from auth_service.domain import AuthReason, Role, Status
from auth_service.keys import KeyRing, new_private_pem, signing_key
from auth_service.token_issuer import TokenIssuer
from auth_service.use_cases.accounts import Accounts
from auth_service.use_cases.sessions import Sessions
from common.errors import InvalidArgument, ServiceError
from tests.unit.fakes.auth import FakeAuthStore, FakeRevocations, Unlimited

PASSWORD = "correct horse battery"
ADDRESS = "192.0.2.7"


class World:
    def __init__(self) -> None:
        self.store = FakeAuthStore()
        self.revocations = FakeRevocations()
        self.guard = Unlimited()
        issuer = TokenIssuer(KeyRing.of_one(signing_key(new_private_pem())), 900)
        self.accounts = Accounts(self.store, issuer, self.revocations, self.guard, 8)
        self.sessions = Sessions(self.store, issuer, self.revocations, self.guard, 3600)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    # Argon2 is slow on purpose; these tests are about the use cases, not the hashing.
    quick = CryptContext(schemes=["plaintext"])
    monkeypatch.setattr(passwords, "_CONTEXT", quick)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", quick.hash("not a real password"))
    return World()


def _reason(error: pytest.ExceptionInfo[ServiceError]) -> str:
    return error.value.reason


async def test_register_stores_the_user_and_its_event_in_one_transaction(world: World) -> None:
    user = await world.accounts.register(" Ann@Example.com ", PASSWORD, ADDRESS)
    assert (user.email, user.status, user.role) == ("ann@example.com", Status.ACTIVE, Role.USER)
    assert world.store.tables.outbox == [(user.user_id, "user.registered")]
    with pytest.raises(ServiceError) as taken:
        await world.accounts.register("ann@example.com", PASSWORD, ADDRESS)
    assert _reason(taken) == AuthReason.EMAIL_TAKEN
    assert len(world.store.tables.users) == 1
    assert len(world.store.tables.outbox) == 1


async def test_login_refresh_rotation_and_reuse_revoke_the_session(world: World) -> None:
    await world.accounts.register("bo@example.com", PASSWORD)
    pair = await world.sessions.login("BO@example.com", PASSWORD, ADDRESS)
    rotated = await world.sessions.refresh(pair.refresh_token)
    assert rotated.refresh_token != pair.refresh_token
    with pytest.raises(ServiceError) as reused:
        await world.sessions.refresh(pair.refresh_token)
    assert _reason(reused) == AuthReason.REFRESH_TOKEN_REUSED
    (session_id,) = world.store.tables.sessions
    assert world.revocations.revoked == {session_id}
    with pytest.raises(ServiceError) as gone:
        await world.sessions.refresh(rotated.refresh_token)
    assert _reason(gone) == AuthReason.INVALID_REFRESH_TOKEN


async def test_a_wrong_password_is_counted_and_refused_like_an_unknown_email(
    world: World,
) -> None:
    await world.accounts.register("cy@example.com", PASSWORD)
    for email, password in (("cy@example.com", "wrong password"), ("no@example.com", PASSWORD)):
        with pytest.raises(ServiceError) as refused:
            await world.sessions.login(email, password, ADDRESS)
        assert _reason(refused) == AuthReason.INVALID_CREDENTIALS
    assert world.guard.failures == 2
    with pytest.raises(InvalidArgument):
        await world.sessions.login("", PASSWORD, ADDRESS)


async def test_blocking_revokes_every_session_and_blocks_sign_in(world: World) -> None:
    user = await world.accounts.register("di@example.com", PASSWORD)
    await world.sessions.login("di@example.com", PASSWORD, ADDRESS)
    await world.sessions.login("di@example.com", PASSWORD, ADDRESS)
    blocked = await world.accounts.set_status(user.user_id, Status.BLOCKED)
    assert (blocked.status, blocked.version) == (Status.BLOCKED, 2)
    assert world.revocations.revoked == set(world.store.tables.sessions)
    assert len(world.revocations.revoked) == 2
    assert world.store.tables.outbox[-1] == (user.user_id, "user.status_changed")
    with pytest.raises(ServiceError) as refused:
        await world.sessions.login("di@example.com", PASSWORD, ADDRESS)
    assert _reason(refused) == AuthReason.USER_BLOCKED
    again = await world.accounts.set_status(user.user_id, Status.BLOCKED)
    assert again.version == 2  # no change, no event
    assert len(world.store.tables.outbox) == 2


async def test_deleted_is_final_and_unknown_users_are_not_found(world: World) -> None:
    user = await world.accounts.register("ed@example.com", PASSWORD)
    await world.accounts.delete_account(user.user_id)
    with pytest.raises(ServiceError) as final:
        await world.accounts.set_status(user.user_id, Status.ACTIVE)
    assert _reason(final) == AuthReason.USER_DELETED
    with pytest.raises(ServiceError) as missing:
        await world.accounts.get_user("00000000-0000-0000-0000-000000000000")
    assert _reason(missing) == AuthReason.USER_NOT_FOUND


async def test_create_admin_takes_an_existing_account_over(world: World) -> None:
    squatter = await world.accounts.register("fi@example.com", PASSWORD)
    pair = await world.sessions.login("fi@example.com", PASSWORD, ADDRESS)
    admin = await world.accounts.create_admin("fi@example.com", "another long password")
    assert (admin.user_id, admin.role) == (squatter.user_id, Role.ADMIN)
    assert world.revocations.revoked == set(world.store.tables.sessions)
    with pytest.raises(ServiceError):
        await world.sessions.refresh(pair.refresh_token)
    with pytest.raises(ServiceError):
        await world.sessions.login("fi@example.com", PASSWORD, ADDRESS)


async def test_users_are_listed_in_creation_order_page_by_page(world: World) -> None:
    made = [await world.accounts.register(f"u{i}@example.com", PASSWORD) for i in range(3)]
    first = await world.accounts.list_users(None, 2)
    assert [u.user_id for u in first] == [u.user_id for u in made[:2]]
    last = first[-1]
    assert last.created_at is not None
    rest = await world.accounts.list_users((last.created_at, last.user_id), 2)
    assert [u.user_id for u in rest] == [made[2].user_id]
