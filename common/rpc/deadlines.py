"""The time a call has left, from its caller's deadline (gRPC carries it in `grpc-timeout`; the
gateway sets it from a client's `X-Request-Timeout` or its default), so that storage can stop
work nobody is waiting for: a statement is cancelled by PostgreSQL when the time runs out, and
none is started after it has."""

from __future__ import annotations

import time
from contextvars import ContextVar

# time.monotonic() at which the current call's caller stops waiting; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


class DeadlinePassed(Exception):
    """The caller's deadline passed before the work began: answered DEADLINE_EXCEEDED."""


def start(time_remaining: float | None) -> None:
    """At a call's start, from the servicer context's time_remaining()."""
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


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
