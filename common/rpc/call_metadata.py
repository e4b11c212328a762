"""A call's metadata, read once per call.

grpc.aio builds a new tuple from the call's C metadata on every
`context.invocation_metadata()` (about 2 µs for a call's five entries, measured in a
grpc.aio server), and a use read it four times: its request id, the edge's received stamp,
the caller's address and its token. The service's interceptor (common.rpc.grpc_server)
keeps the tuple gRPC already built for the call's HandlerCallDetails; grpc.aio runs a call's
interceptors and its handler in one task, whose context ends with the call, so what is kept
here is that call's and no other's."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

Metadata = Sequence[tuple[str, Any]]

_kept: ContextVar[Metadata | None] = ContextVar("call_metadata", default=None)


def keep(metadata: Metadata | None) -> None:
    """At the call's start, in its task: the metadata its handler will read."""
    _kept.set(metadata or ())


def of(context: Any) -> Metadata:
    """The call's metadata: what `keep` kept, else (a handler called outside the service's
    interceptor, in a test, say) the context's own."""
    kept = _kept.get()
    return kept if kept is not None else (context.invocation_metadata() or ())
