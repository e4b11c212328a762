"""Auth's unit of work over PostgreSQL: it only hands out the store's repositories, bound to
one connection and its transaction, or to the pool for single statements. Each repository
satisfies its port (use_cases/ports.py) itself; building `Repositories` here is where mypy
checks that they do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from auth_service.store.outbox import PgOutbox
from auth_service.store.personal_data import PgPersonalData
from auth_service.store.sessions import PgSessions
from auth_service.store.users import PgUsers
from auth_service.use_cases.ports import Repositories
from common.storage.db import transaction


def repositories(conn: Any) -> Repositories:
    return Repositories(
        users=PgUsers(conn),
        sessions=PgSessions(conn),
        outbox=PgOutbox(conn),
        personal_data=PgPersonalData(conn),
    )


class PgUnitOfWork:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._single = repositories(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        async with transaction(self._pool) as conn:
            yield repositories(conn)

    @property
    def single(self) -> Repositories:
        return self._single
