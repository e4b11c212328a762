"""The audit trail's values, the same in both services: what one recorded call is, and which
part of the trail a ListAuditEvents call asks for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AuditEvent:
    actor_id: str
    method: str
    target: str
    outcome: str
    client_address: str
    at: datetime | None = None  # set by the store
    event_id: int = 0  # set by the store; orders events recorded in the same instant


@dataclass(frozen=True)
class AuditQuery:
    """Events newest first, every filter optional; `after` is (at, id) of the last event of
    the page before."""

    actor_id: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, int] | None = None
    limit: int = 50
