"""Who the current call is: set by the token check, read by the audit trail after the handler
ran. A context variable, because grpc.aio runs each call in its own task and the servicer
awaits the check in that task, so the value reaches the per-call wrapper that recorded it
without every servicer passing it along."""

from __future__ import annotations

from contextvars import ContextVar

# A user id, `service:<id>` for a service account, or "" while no token was accepted.
caller_id: ContextVar[str] = ContextVar("caller_id", default="")
