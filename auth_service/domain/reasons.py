"""Why auth refuses a request: the contract's reason strings, in one table like loyalty's."""

from __future__ import annotations

from enum import StrEnum

from common.errors import ErrorKind, ServiceError

DOMAIN = "auth.loyalty"


class AuthReason(StrEnum):
    EMAIL_TAKEN = "EMAIL_TAKEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_REFRESH_TOKEN = "INVALID_REFRESH_TOKEN"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    USER_BLOCKED = "USER_BLOCKED"
    USER_DELETED = "USER_DELETED"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    TOO_MANY_LOGIN_ATTEMPTS = "TOO_MANY_LOGIN_ATTEMPTS"
    TOO_MANY_REGISTRATIONS = "TOO_MANY_REGISTRATIONS"
    INVALID_CLIENT = "INVALID_CLIENT"
    SERVICE_ACCOUNT_NOT_FOUND = "SERVICE_ACCOUNT_NOT_FOUND"


def refusal(kind: ErrorKind, reason: AuthReason, message: str) -> ServiceError:
    return ServiceError(kind, reason.value, message, DOMAIN)


def email_taken() -> ServiceError:
    return refusal(
        ErrorKind.ALREADY_EXISTS, AuthReason.EMAIL_TAKEN, "this email is already registered"
    )


def invalid_credentials() -> ServiceError:
    return refusal(
        ErrorKind.UNAUTHENTICATED, AuthReason.INVALID_CREDENTIALS, "wrong email or password"
    )


def invalid_refresh() -> ServiceError:
    return refusal(
        ErrorKind.UNAUTHENTICATED,
        AuthReason.INVALID_REFRESH_TOKEN,
        "refresh token is invalid or expired",
    )


def refresh_token_reused() -> ServiceError:
    return refusal(
        ErrorKind.UNAUTHENTICATED,
        AuthReason.REFRESH_TOKEN_REUSED,
        "this refresh token was already used; the session is revoked",
    )


def user_not_found(user_id: str) -> ServiceError:
    return refusal(ErrorKind.NOT_FOUND, AuthReason.USER_NOT_FOUND, f"no user {user_id}")


def invalid_client() -> ServiceError:
    return refusal(
        ErrorKind.UNAUTHENTICATED,
        AuthReason.INVALID_CLIENT,
        "unknown client, wrong or expired secret, or a deleted service account",
    )


def service_account_not_found(account_id: str) -> ServiceError:
    return refusal(
        ErrorKind.NOT_FOUND,
        AuthReason.SERVICE_ACCOUNT_NOT_FOUND,
        f"no service account {account_id}",
    )
