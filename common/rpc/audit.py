"""Which calls the audit trail records, and the record of one call (who, what, about whom,
from where, with which outcome). The per-call wrapper of common/rpc/grpc_server.py calls it
for the methods the policy covers, and only those: a user's own calls cost nothing here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from common.access.caller import caller_id
from common.access.client_address import PEER_ONLY, AddressRule
from common.audit_events import AuditEvent
from common.rpc import call_metadata
from common.rpc.grpc_errors import status_for
from common.telemetry.logs import get_logger

log = get_logger("audit")

# The request fields that name a call's subject, the first one present wins; a repeated one
# (a bulk call on many users) gives one event per item, so each user finds theirs.
SUBJECT_FIELDS = (
    "user_id",
    "user_ids",
    "purchase_id",
    "referral_id",
    "group_id",
    "campaign_id",
    "code",
    "codes",
    "id",
)
# A bulk call records at most this many targets (the request rules cap lists well below it).
MAX_TARGETS = 10_000


class AuditLog(Protocol):
    async def append(self, events: Sequence[AuditEvent]) -> None: ...


@dataclass(frozen=True)
class AuditPolicy:
    """Every method of `services` (full service names), plus the single `methods` (full
    method names, `/package.Service/Method`)."""

    services: frozenset[str]
    methods: frozenset[str] = frozenset()

    def covers(self, method: str) -> bool:
        service = method.lstrip("/").rpartition("/")[0]
        return service in self.services or method in self.methods


def _values(request: Any, name: str) -> list[str]:
    try:
        value = getattr(request, name)
    except AttributeError:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Iterable):
        return [str(v) for v in value if isinstance(v, str) and v]
    return []


def targets(request: Any) -> list[str]:
    """The call's subjects: the values of the first subject field it fills, or [""]."""
    for name in SUBJECT_FIELDS:
        found = _values(request, name)
        if found:
            return list(dict.fromkeys(found))[:MAX_TARGETS]
    return [""]


def outcome_of(error: BaseException) -> str:
    status = status_for(error)
    code = status.code if status is not None else grpc.StatusCode.INTERNAL
    return str(code.name)


class CallAudit:
    def __init__(
        self, policy: AuditPolicy, trail: AuditLog, addresses: AddressRule = PEER_ONLY
    ) -> None:
        self._policy = policy
        self._trail = trail
        # The gateway's signed word about its client, else the peer (client_address.py).
        self._addresses = addresses

    def covers(self, method: str) -> bool:
        return self._policy.covers(method)

    def _events(self, method: str, request: Any, context: Any, outcome: str) -> list[AuditEvent]:
        address = self._addresses.client_address(call_metadata.of(context), context.peer())
        actor = caller_id.get()
        return [AuditEvent(actor, method, t, outcome, address) for t in targets(request)]

    async def record(self, method: str, request: Any, context: Any, outcome: str) -> None:
        """Writes the call's events; raises when the trail cannot be written, so that a
        successful read is never answered unrecorded."""
        await self._trail.append(self._events(method, request, context, outcome))

    async def record_failure(self, method: str, request: Any, context: Any, outcome: str) -> None:
        """The same for a call that failed anyway: a trail that cannot be written is logged,
        and the call keeps its own status."""
        try:
            await self.record(method, request, context, outcome)
        except Exception as error:
            log.error("audit_write_failed", method=method, outcome=outcome, error=repr(error))
