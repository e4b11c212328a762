"""Auth's unit of work in memory: users, sessions and outbox as dicts and lists. A transaction
works on copies and keeps them only when its block ends without an error, like PostgreSQL."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from auth_service.domain import EmailTaken, RefreshUse, Role, Status, User
from auth_service.domain.privacy import SessionRecord
from auth_service.use_cases.ports import Repositories


@dataclass
class Session:
    user_id: str
    expires_at: datetime
    revoked: bool = False


@dataclass
class Tables:
    users: dict[str, User] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    # token hash -> (session id, used)
    tokens: dict[str, tuple[str, bool]] = field(default_factory=dict)
    outbox: list[tuple[str, str]] = field(default_factory=list)  # (user id, routing key)
    email_hashes: dict[str, bytes] = field(default_factory=dict)  # of erased accounts


class FakeUsers:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def insert(self, user_id: str, email: str, password_hash: str) -> User:
        if any(u.email.lower() == email.lower() for u in self._t.users.values()):
            raise EmailTaken(email)
        now = datetime.now(UTC) + timedelta(microseconds=len(self._t.users))
        user = User(user_id, email, Status.ACTIVE, Role.USER, 1, password_hash, now, now)
        self._t.users[user_id] = user
        return user

    async def by_email(self, email: str) -> User | None:
        return next((u for u in self._t.users.values() if u.email == email.lower()), None)

    async def by_id(self, user_id: str, *, lock: bool = False) -> User | None:
        return self._t.users.get(user_id)

    def _replace(self, user_id: str, **changes: object) -> User:
        user = dataclasses.replace(self._t.users[user_id], **changes)  # type: ignore[arg-type]
        self._t.users[user_id] = user
        return user

    async def set_status(self, user_id: str, status: Status) -> User:
        return self._replace(user_id, status=status, version=self._t.users[user_id].version + 1)

    async def set_role(self, user_id: str, role: Role) -> None:
        self._replace(user_id, role=role)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self._replace(user_id, password_hash=password_hash)

    async def page(
        self, after: tuple[datetime, str] | None, limit: int, email_prefix: str = ""
    ) -> list[User]:
        ordered = sorted(self._t.users.values(), key=lambda u: (u.created_at, u.user_id))
        prefix = email_prefix.lower()
        return [
            u
            for u in ordered
            if (after is None or (u.created_at, u.user_id) > after)
            and (not prefix or (u.email.lower().startswith(prefix) and u.email))
        ][:limit]

    async def emails(self, user_ids: list[str]) -> dict[str, str]:
        found = (self._t.users[i] for i in user_ids if i in self._t.users)
        return {u.user_id: "" if u.status is Status.DELETED else u.email for u in found}


class FakeSessions:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def create(
        self, session_id: str, user_id: str, expires_at: datetime, token_hash: str
    ) -> None:
        self._t.sessions[session_id] = Session(user_id, expires_at)
        await self.add_refresh_token(session_id, token_hash)

    async def add_refresh_token(self, session_id: str, token_hash: str) -> None:
        self._t.tokens[token_hash] = (session_id, False)

    async def use_refresh_token(self, token_hash: str) -> RefreshUse:
        if token_hash not in self._t.tokens:
            return RefreshUse(None, None, reused=False)
        session_id, used = self._t.tokens[token_hash]
        session = self._t.sessions[session_id]
        if used:
            return RefreshUse(session_id, session.user_id, reused=True)
        if session.revoked or session.expires_at <= datetime.now(UTC):
            return RefreshUse(None, None, reused=False)
        self._t.tokens[token_hash] = (session_id, True)
        return RefreshUse(session_id, session.user_id, reused=False)

    async def session_of_token(self, token_hash: str) -> str | None:
        found = self._t.tokens.get(token_hash)
        return found[0] if found else None

    async def revoke(self, session_id: str) -> None:
        self._t.sessions[session_id].revoked = True

    async def revoke_all_of_user(self, user_id: str) -> list[str]:
        live = [
            sid for sid, s in self._t.sessions.items() if s.user_id == user_id and not s.revoked
        ]
        for sid in live:
            self._t.sessions[sid].revoked = True
        return live


class FakeOutbox:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def add(self, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None:
        self._t.outbox.append((user_id, routing_key))

    async def notify(self) -> None:
        return None


class FakePersonalData:
    """Erasure as PostgreSQL does it: a DELETED user loses the email and password hash."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def erase(self, user_id: str, email_hash: bytes) -> None:
        user = self._t.users[user_id]
        if user.status is Status.DELETED:
            self._t.users[user_id] = dataclasses.replace(user, email="", password_hash="")
            self._t.email_hashes[user_id] = email_hash

    async def sessions_of(self, user_id: str, limit: int) -> list[SessionRecord]:
        return []


def _repositories(tables: Tables) -> Repositories:
    return Repositories(
        FakeUsers(tables), FakeSessions(tables), FakeOutbox(tables), FakePersonalData(tables)
    )


class FakeAuthStore:
    def __init__(self) -> None:
        self.tables = Tables()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        working = copy.deepcopy(self.tables)
        yield _repositories(working)
        self.tables = working

    @property
    def single(self) -> Repositories:
        return _repositories(self.tables)


class FakeRevocations:
    def __init__(self) -> None:
        self.revoked: set[str] = set()

    async def revoke(self, session_ids: Iterable[str], ttl_seconds: int) -> None:
        self.revoked.update(session_ids)


class Unlimited:
    """A login and registration guard that never refuses, and counts what it saw."""

    def __init__(self) -> None:
        self.failures = 0

    async def check(self, email: str, address: str) -> None:
        return None

    async def failed(self, email: str, address: str) -> None:
        self.failures += 1

    async def take(self, address: str) -> None:
        return None
