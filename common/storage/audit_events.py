"""SQL of the audit trail (`audit_events`, the same table in both services' databases)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from common.audit_events import AuditEvent, AuditQuery

_COLUMNS = "id, at, actor_id, method, target, outcome, client_address"


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        actor_id=row["actor_id"],
        method=row["method"],
        target=row["target"],
        outcome=row["outcome"],
        client_address=row["client_address"],
        at=row["at"],
        event_id=row["id"],
    )


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    """The filters as one WHERE clause; every value a parameter."""
    conditions: list[str] = []
    values: list[Any] = []

    def add(template: str, value: Any) -> None:
        values.append(value)
        conditions.append(template.format(f"${len(values)}"))

    if query.actor_id:
        add("actor_id = {}", query.actor_id)
    if query.target:
        add("target = {}", query.target)
    if query.since is not None:
        add("at >= {}", query.since)
    if query.until is not None:
        add("at < {}", query.until)
    if query.after is not None:
        values.append(query.after[0])
        add(f"(at, id) < (${len(values)}, {{}})", query.after[1])
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", values


class PgAuditEvents:
    """The trail over a pool (or one connection): appends, pages, and the retention delete."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """All events of one call in one statement (a bulk call names many targets)."""
        await self._conn.execute(
            "INSERT INTO audit_events (actor_id, method, target, outcome, client_address)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
            [e.actor_id for e in events],
            [e.method for e in events],
            [e.target for e in events],
            [e.outcome for e in events],
            [e.client_address for e in events],
        )

    async def page(self, query: AuditQuery) -> list[AuditEvent]:
        where, values = _where(query)
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM audit_events{where}"
            f" ORDER BY at DESC, id DESC LIMIT ${len(values) + 1}",
            *values,
            query.limit,
        )
        return [_event(r) for r in rows]

    async def forget_before(self, cutoff: datetime) -> int:
        """Deletes events older than `cutoff`: the one delete the append-only trigger allows,
        because this transaction says it is the retention job."""
        async with self._acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('audit.retention', 'on', true)")
            done = await conn.execute("DELETE FROM audit_events WHERE at < $1", cutoff)
        return int(done.split()[-1])

    def _acquire(self) -> Any:
        return self._conn.acquire()
