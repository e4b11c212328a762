"""The user's own data, on request: what auth holds about them (docs/privacy.md)."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service import domain
from auth_service.domain import User
from auth_service.domain.privacy import SessionRecord
from auth_service.use_cases.ports import UnitOfWork
from common.audit_events import AuditEvent, AuditQuery
from common.rpc.audit_api import AuditReader

# Each list of an export holds at most this many items, newest first.
EXPORT_LIMIT = 10_000


@dataclass(frozen=True)
class MyData:
    account: User
    sessions: list[SessionRecord]
    audit_events: list[AuditEvent]


class Privacy:
    def __init__(self, store: UnitOfWork, audit: AuditReader) -> None:
        self._store = store
        self._audit = audit

    async def my_data(self, user_id: str) -> MyData:
        single = self._store.single
        account = await single.users.by_id(user_id)
        if account is None:
            raise domain.user_not_found(user_id)
        sessions = await single.personal_data.sessions_of(user_id, EXPORT_LIMIT)
        events = await self._audit.page(AuditQuery(target=user_id, limit=EXPORT_LIMIT))
        return MyData(account, sessions, events)
