"""ListAuditEvents, the same in both services' admin APIs: the request checked and turned into
an AuditQuery, a page of the trail turned into the response."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from common.audit_events import AuditEvent, AuditQuery
from common.errors import InvalidArgument
from common.rpc import pagination
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.proto_time import timestamp, when
from common.rpc.request_rules import in_time_range
from common.rpc.validation import page_size
from protogen.loyalty.audit.v1 import audit_pb2

LIST_NAME = "audit_events"


class AuditReader(Protocol):
    async def page(self, query: AuditQuery) -> list[AuditEvent]: ...


def _cursor(tokens: PageTokens, token: str) -> tuple[datetime, int] | None:
    found = tokens.decode(LIST_NAME, token, (str, int))
    if found is None:
        return None
    try:
        at = datetime.fromisoformat(str(found[0]))
    except ValueError:
        raise InvalidArgument.of("page_token", "not a page token this list made") from None
    if at.tzinfo is None or not in_time_range(at):
        raise InvalidArgument.of("page_token", "not a page token this list made")
    return at, int(found[1])


def _position(event: AuditEvent) -> Position:
    assert event.at is not None  # every stored event has one
    return (event.at.isoformat(), event.event_id)


def audit_query(request: audit_pb2.ListAuditEventsRequest, tokens: PageTokens) -> AuditQuery:
    since, until = when(request, "from"), when(request, "to")
    if since is not None and until is not None and until <= since:
        raise InvalidArgument.of("to", "must be later than from")
    return AuditQuery(
        actor_id=request.actor_id.strip(),
        target=request.target.strip(),
        since=since,
        until=until,
        after=_cursor(tokens, request.page_token),
        limit=page_size(request.page_size) + 1,
    )


def event_message(event: AuditEvent) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        actor_id=event.actor_id,
        method=event.method,
        target=event.target,
        at=timestamp(event.at),
        client_address=event.client_address,
        outcome=event.outcome,
    )


async def list_audit_events(
    request: audit_pb2.ListAuditEventsRequest, trail: AuditReader, tokens: PageTokens
) -> audit_pb2.ListAuditEventsResponse:
    query = audit_query(request, tokens)
    size = query.limit - 1
    found = await trail.page(query)
    return audit_pb2.ListAuditEventsResponse(
        events=[event_message(e) for e in found[:size]],
        next_page_token=pagination.next_token(tokens, LIST_NAME, found, size, _position),
    )
