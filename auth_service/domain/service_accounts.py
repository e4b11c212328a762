"""Service accounts' rules, free of I/O: which scopes exist, what a valid account is, and what
a service access token claims."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from common.errors import FieldViolation, InvalidArgument

# Scopes a service account may hold. Confirming and refunding purchases belong to the
# payment side (loyalty checks it with `identity.has_scope`).
SETTLE_PURCHASES = "purchases:settle"
KNOWN_SCOPES = frozenset({SETTLE_PURCHASES})
MAX_NAME_LENGTH = 100
# A token's `sub` for a service account, so it can never be read as a user's UUID.
SUBJECT_PREFIX = "service:"


@dataclass(frozen=True)
class ServiceAccount:
    account_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime | None = None

    @property
    def subject(self) -> str:
        return subject_of(self.account_id)


def subject_of(account_id: str) -> str:
    return f"{SUBJECT_PREFIX}{account_id}"


def check_new_account(name: str, scopes: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The trimmed name and the scopes without repeats (in the order given); INVALID_ARGUMENT
    naming each bad field."""
    problems = [*_name_problems(name), *_scope_problems(list(scopes))]
    if problems:
        raise InvalidArgument(problems)
    return name.strip(), tuple(dict.fromkeys(scopes))


def _name_problems(name: str) -> list[FieldViolation]:
    if not name.strip():
        return [FieldViolation("name", "must not be empty")]
    if len(name.strip()) > MAX_NAME_LENGTH:
        return [FieldViolation("name", f"must be at most {MAX_NAME_LENGTH} characters")]
    return []


def _scope_problems(scopes: list[str]) -> list[FieldViolation]:
    if not scopes:
        known = ", ".join(sorted(KNOWN_SCOPES))
        return [FieldViolation("scopes", f"must name at least one scope ({known})")]
    return [
        FieldViolation(f"scopes[{index}]", f"unknown scope {scope!r}")
        for index, scope in enumerate(scopes)
        if scope not in KNOWN_SCOPES
    ]


def service_claims(
    account: ServiceAccount, token_id: str, now: int, ttl: int, issuer: str
) -> dict[str, object]:
    """No `role`: a service token is never a user's. `sid` is the subject, which deleting the
    account revokes like a session."""
    return {
        "sub": account.subject,
        "scope": " ".join(account.scopes),
        "sid": account.subject,
        "jti": token_id,
        "iat": now,
        "exp": now + ttl,
        "iss": issuer,
    }
