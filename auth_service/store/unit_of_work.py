"""Auth's unit of work over PostgreSQL: the repositories bound to one connection and its
transaction, or to the pool for single statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from auth_service.domain import RefreshUse, Role, Status, User
from auth_service.store import outbox, sessions, users
from auth_service.store.personal_data import PgPersonalData
from auth_service.use_cases.ports import Repositories


class PgUsers:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def insert(self, user_id: str, email: str, password_hash: str) -> User:
        return await users.insert(self._conn, user_id, email, password_hash)

    async def by_email(self, email: str) -> User | None:
        return await users.by_email(self._conn, email)

    async def by_id(self, user_id: str, *, lock: bool = False) -> User | None:
        return await users.by_id(self._conn, user_id, lock=lock)

    async def set_status(self, user_id: str, status: Status) -> User:
        return await users.set_status(self._conn, user_id, status)

    async def set_role(self, user_id: str, role: Role) -> None:
        await users.set_role(self._conn, user_id, role)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await users.set_password_hash(self._conn, user_id, password_hash)

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[User]:
        return await users.page(self._conn, after, limit)


class PgSessions:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def create(
        self, session_id: str, user_id: str, expires_at: datetime, token_hash: str
    ) -> None:
        await sessions.create(self._conn, session_id, user_id, expires_at, token_hash)

    async def add_refresh_token(self, session_id: str, token_hash: str) -> None:
        await sessions.add_refresh_token(self._conn, session_id, token_hash)

    async def use_refresh_token(self, token_hash: str) -> RefreshUse:
        return await sessions.use_refresh_token(self._conn, token_hash)

    async def session_of_token(self, token_hash: str) -> str | None:
        return await sessions.session_of_token(self._conn, token_hash)

    async def revoke(self, session_id: str) -> None:
        await sessions.revoke(self._conn, session_id)

    async def revoke_all_of_user(self, user_id: str) -> list[str]:
        return await sessions.revoke_all_of_user(self._conn, user_id)


class PgOutbox:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None:
        await outbox.add(self._conn, event_id, user_id, routing_key, payload)

    async def notify(self) -> None:
        await outbox.notify(self._conn)


def repositories(conn: Any) -> Repositories:
    return Repositories(PgUsers(conn), PgSessions(conn), PgOutbox(conn), PgPersonalData(conn))


class PgUnitOfWork:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._single = repositories(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield repositories(conn)

    @property
    def single(self) -> Repositories:
        return self._single
