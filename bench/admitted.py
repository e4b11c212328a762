"""Calls sent again the way a well-behaved client sends them: after the retry delay a server
refusing for load gave (RESOURCE_EXHAUSTED, ErrorInfo OVERLOADED, RetryInfo), or after a pause
while a dependency is UNAVAILABLE. For the benchmark's setup (sign-ups, logins), which must
succeed, and for its closed loops, which wait as a client would rather than spin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.rpc.grpc_errors import REFUSED_BY

OVERLOADED = "OVERLOADED"
INTAKE_RETRY_S = 1.0


class HttpRefused(Exception):
    """An HTTP answer other than 200; `retry_after` from a 429's Retry-After header."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def overload_delay(error: BaseException) -> float | None:
    """The retry delay of a refusal for load, or None for any other outcome. A CANCELLED the
    bench did not cause is a server's gRPC core refusing the call at intake (GRPC_MAX_PENDING),
    which carries no delay: the documented second (the gateway's Retry-After for it)."""
    if isinstance(error, HttpRefused):
        return error.retry_after if error.status in (429, 503) else None
    if not isinstance(error, grpc.aio.AioRpcError):
        return None
    if error.code() == grpc.StatusCode.CANCELLED:
        return INTAKE_RETRY_S
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    status = rpc_status.from_call(error)
    if status is None:
        return None
    reason, delay, _refuser = status_details(status)
    return (delay or 0.0) if reason == OVERLOADED else None


def status_details(status: status_pb2.Status) -> tuple[str, float | None, str]:
    """The ErrorInfo reason, the RetryInfo delay (seconds) and who refused the call for load
    when it was not the service itself (ErrorInfo's `refused_by`; "" when absent) of a
    google.rpc.Status."""
    reason, delay, refuser = "", None, ""
    for detail in status.details:
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason, refuser = str(info.reason), info.metadata.get(REFUSED_BY, "")
        elif detail.Unpack(retry):
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return reason, delay, refuser


async def patiently(
    call: Callable[[], Awaitable[Any]], tolerated: grpc.StatusCode | None = None
) -> Any:
    """`call()`, again while it is refused for load or UNAVAILABLE (a PostgreSQL shared with
    other work can run out of connections for a while); an answer with the `tolerated` code
    counts as done (None)."""
    for attempt in range(60):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if tolerated is not None and error.code() == tolerated:
                return None
            delay = overload_delay(error)
            if delay is None and error.code() == grpc.StatusCode.UNAVAILABLE:
                delay = 0.5
            if delay is None or attempt == 59:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
