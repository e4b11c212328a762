"""Auth's rules, free of I/O: what a valid email and password are, who may sign in,
which status changes are allowed, and what an access token claims."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from auth_service.domain import credentials
from auth_service.domain.reasons import (
    DOMAIN,
    AuthReason,
    email_taken,
    invalid_credentials,
    invalid_refresh,
    refresh_token_reused,
    refusal,
    user_not_found,
)
from common.errors import ErrorKind, FieldViolation, InvalidArgument
from common.user_status import UserStatus

__all__ = [
    "DOMAIN",
    "AuthReason",
    "email_taken",
    "invalid_credentials",
    "invalid_refresh",
    "refresh_token_reused",
    "refusal",
    "user_not_found",
]
MAX_EMAIL_LENGTH = credentials.MAX_EMAIL_LENGTH
MAX_PASSWORD_LENGTH = credentials.MAX_PASSWORD_LENGTH


# Auth's name for the status both services share.
Status = UserStatus


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    status: Status
    role: Role
    version: int
    password_hash: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RefreshUse:
    """What presenting a refresh token found: a fresh token, a reused one, or nothing."""

    session_id: str | None
    user_id: str | None
    reused: bool


class EmailTaken(Exception):
    """The email is registered already (the store's unique index said so)."""


def normalize_email(email: str) -> str:
    """The canonical form to look an email up by (see credentials)."""
    return credentials.lookup_email(email)


def check_credentials_input(email: str, password: str, min_length: int) -> str:
    """The canonical email; INVALID_ARGUMENT naming each malformed or weak field."""
    problems = []
    try:
        email = credentials.canonical_email(email)
    except credentials.EmailProblem as problem:
        problems.append(FieldViolation("email", str(problem)))
    password_problem = credentials.password_problem(password, email, min_length)
    if password_problem:
        problems.append(FieldViolation("password", password_problem))
    if problems:
        raise InvalidArgument(problems)
    return email


def check_may_sign_in(status: Status) -> None:
    if status is Status.BLOCKED:
        raise refusal(
            ErrorKind.PERMISSION_DENIED, AuthReason.USER_BLOCKED, "this account is blocked"
        )
    if status is Status.DELETED:
        raise refusal(
            ErrorKind.PERMISSION_DENIED, AuthReason.USER_DELETED, "this account is deleted"
        )


def check_status_change(current: Status, new: Status) -> None:
    """Admins move users between ACTIVE and BLOCKED; DELETED is final."""
    if current is Status.DELETED:
        raise refusal(
            ErrorKind.FAILED_PRECONDITION,
            AuthReason.USER_DELETED,
            "a deleted account cannot change status",
        )
    if new is Status.DELETED:
        raise InvalidArgument.of("status", "must be ACTIVE or BLOCKED")


def status_changed(current: Status, new: Status) -> bool:
    return current is not new


def access_claims(
    user: User, session_id: str, token_id: str, now: int, ttl: int, issuer: str
) -> dict[str, object]:
    return {
        "sub": user.user_id,
        "role": user.role.value,
        "sid": session_id,
        "jti": token_id,
        "iat": now,
        "exp": now + ttl,
        "iss": issuer,
    }
