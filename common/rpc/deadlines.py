"""The time a call has left, from its caller's deadline (gRPC carries it in `grpc-timeout`; the
gateway sets it from a client's `X-Request-Timeout` or its default), so that storage can stop
work nobody is waiting for: a statement is cancelled by PostgreSQL when the time runs out, and
none is started after it has.

gRPC starts a call's clock when the call reaches this process, which behind the edge is after
its wait in the edge's queue (up to EDGE_QUEUE_TIMEOUT_MS). So the edge stamps each call with
the wall-clock millisecond it took it (RECEIVED_HEADER) and the wait is taken off here. The
stamp only ever shortens a call's time: a caller that sends one itself, straight to the
service, can shorten its own deadline and nobody else's, as a shorter `grpc-timeout` would."""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

RECEIVED_HEADER = "x-edge-received-ms"
# The longest wait a stamp is believed for. The edge holds a call in its queue for at most
# EDGE_QUEUE_TIMEOUT_MS (100 ms by default; common.processes.edge refuses more than this), so
# an older stamp is the edge's clock and this host's disagreeing, not a wait: taken at its
# word, a skew of seconds would cut every call's deadline by that much, or refuse them all.
LONGEST_WAIT_S = 1.0

# time.monotonic() at which the current call's caller stops waiting; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


class DeadlinePassed(Exception):
    """The caller's deadline passed before the work began: answered DEADLINE_EXCEEDED."""


def start(time_remaining: float | None, metadata: Iterable[tuple[str, Any]] = ()) -> None:
    """At a call's start, from the servicer context's time_remaining() and its metadata."""
    if time_remaining is None:
        _deadline.set(None)
        return
    _deadline.set(time.monotonic() + time_remaining - waited(metadata, time.time()))


def waited(metadata: Iterable[tuple[str, Any]], now: float) -> float:
    """Seconds since the edge took the call (RECEIVED_HEADER, against the wall clock `now`),
    at most LONGEST_WAIT_S; 0 without a stamp, or with one that is not a number or lies in
    the future."""
    for key, value in metadata:
        if key == RECEIVED_HEADER:
            try:
                return min(max(0.0, now - int(value) / 1000), LONGEST_WAIT_S)
            except (TypeError, ValueError):
                return 0.0
    return 0.0


def time_left() -> float | None:
    """Seconds until the caller's deadline (0 or less: passed), or None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def passed() -> bool:
    left = time_left()
    return left is not None and left <= 0


def bounded(timeout: float | None) -> float | None:
    """`timeout` shortened to the time left; DeadlinePassed when none is."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise DeadlinePassed
    return left if timeout is None else min(left, timeout)
