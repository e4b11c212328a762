from __future__ import annotations

import pytest

from auth_service.domain import (
    Role,
    Status,
    User,
    access_claims,
    check_credentials_input,
    check_may_sign_in,
    check_status_change,
    status_changed,
)
from auth_service.keys import new_private_pem, signing_key
from common.errors import ErrorKind, InvalidArgument, ServiceError


def test_credentials_are_normalised_and_checked() -> None:
    assert check_credentials_input(" Ann@Example.COM ", "long enough", 8) == "ann@example.com"
    with pytest.raises(InvalidArgument) as raised:
        check_credentials_input("ann", "short", 8)
    assert {v.field for v in raised.value.violations} == {"email", "password"}
    for password in ("x" * 129, "  padded  "):
        with pytest.raises(InvalidArgument):
            check_credentials_input("a@b.co", password, 8)


@pytest.mark.parametrize(
    ("status", "reason"), [("BLOCKED", "USER_BLOCKED"), ("DELETED", "USER_DELETED")]
)
def test_blocked_and_deleted_users_cannot_sign_in(status: str, reason: str) -> None:
    check_may_sign_in(Status.ACTIVE)
    with pytest.raises(ServiceError) as raised:
        check_may_sign_in(Status(status))
    assert (raised.value.kind, raised.value.reason) == (ErrorKind.PERMISSION_DENIED, reason)


def test_status_transitions() -> None:
    check_status_change(Status.ACTIVE, Status.BLOCKED)
    check_status_change(Status.BLOCKED, Status.ACTIVE)
    with pytest.raises(InvalidArgument):
        check_status_change(Status.ACTIVE, Status.DELETED)
    with pytest.raises(ServiceError) as raised:
        check_status_change(Status.DELETED, Status.ACTIVE)
    assert raised.value.kind is ErrorKind.FAILED_PRECONDITION
    assert status_changed(Status.ACTIVE, Status.BLOCKED)
    assert not status_changed(Status.BLOCKED, Status.BLOCKED)


def test_access_claims() -> None:
    user = User("u1", "a@b.co", Status.ACTIVE, Role.ADMIN, 1)
    claims = access_claims(user, "s1", "j1", 1000, 900, "iss")
    assert claims == {
        "sub": "u1",
        "role": "admin",
        "sid": "s1",
        "jti": "j1",
        "iat": 1000,
        "exp": 1900,
        "iss": "iss",
    }


def test_kid_is_stable_for_a_key_and_differs_between_keys() -> None:
    pem = new_private_pem()
    assert signing_key(pem).kid == signing_key(pem).kid
    assert signing_key(pem).kid != signing_key(new_private_pem()).kid
    assert signing_key(pem).public_jwk["crv"] == "Ed25519"
