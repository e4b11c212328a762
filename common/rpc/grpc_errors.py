"""The one place where errors become gRPC statuses with rich details."""

from __future__ import annotations

import asyncio
import functools
import math

import asyncpg
import grpc
import redis.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.errors import InvalidArgument, ServiceError
from common.rpc import deadlines
from common.storage.db_errors import (
    CONNECTION_ERRORS,
    is_data_exception,
    is_statement_cancelled,
    is_transaction_conflict,
    lost_connection,
)

# A statement PostgreSQL cancelled (statement_timeout, or asyncpg's cancel request when a
# query's timeout ran out).
CANCELLED: tuple[type[BaseException], ...] = (asyncpg.exceptions.QueryCanceledError,)
_CODES: dict[str, int] = {name: code_pb2.Code.Value(name) for name in code_pb2.Code.keys()}  # noqa: SIM118

# Failures of a dependency (Postgres, Redis, the other service): the caller may retry.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    *CONNECTION_ERRORS,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    grpc.aio.AioRpcError,
)


def is_unavailable(error: BaseException) -> bool:
    """A dependency failed (down, restarting, connection lost), not the code: retry later."""
    return isinstance(error, DEPENDENCY_ERRORS) or lost_connection(error)


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    """A retry delay of `seconds`, fractions kept (a ServiceError's is rounded up instead)."""
    seconds = max(seconds, 0.0)
    whole = int(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def service_error_status(error: ServiceError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=error.domain, metadata=error.metadata
    )
    details = [_packed(info)]
    if error.retry_after is not None:
        delay = duration_pb2.Duration(seconds=math.ceil(error.retry_after))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(
        code=_CODES[error.kind.value], message=error.message, details=details
    )
    return rpc_status.to_status(status)


def bad_request(error: InvalidArgument) -> error_details_pb2.BadRequest:
    """google.rpc.BadRequest naming each field: the one builder of gRPC and HTTP answers."""
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )


def invalid_argument_status(error: InvalidArgument) -> grpc.Status:
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=str(error), details=[_packed(bad_request(error))]
    )
    return rpc_status.to_status(status)


OVERLOADED = "OVERLOADED"
REFUSED_BY = "refused_by"


@functools.cache
def overloaded_status(retry_after: float, domain: str, refused_by: str = "") -> grpc.Status:
    """A call refused by admission control (common.rpc.admission): RESOURCE_EXHAUSTED with
    ErrorInfo OVERLOADED and a RetryInfo. Built once: it is the answer to every excess call.
    `refused_by` names, in the ErrorInfo's metadata, a part in front of the service that
    refused it (the edge), for whoever reads the answers: the same to a client either way."""
    info = error_details_pb2.ErrorInfo(reason=OVERLOADED, domain=domain)
    if refused_by:
        info.metadata[REFUSED_BY] = refused_by
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="the server is at capacity; retry after the delay given",
        details=[_packed(info), _packed(_retry_info(retry_after))],
    )
    return rpc_status.to_status(status)


CONCURRENT_CHANGE = "CONCURRENT_CHANGE"
# The ErrorInfo domain of a race lost in the database, which either service may meet.
STORAGE_DOMAIN = "storage.loyalty"
CONFLICT_RETRY_AFTER_S = 0.05


@functools.cache
def conflict_status() -> grpc.Status:
    """PostgreSQL undid the call's transaction as the loser of a race (a deadlock victim, a
    serialization failure), and it stayed lost after the store's own attempts: ABORTED with
    ErrorInfo CONCURRENT_CHANGE and a RetryInfo, like every other refusal a caller may retry.
    Nothing of the call was kept, so the same call (the same request id) may be sent again."""
    status = status_pb2.Status(
        code=code_pb2.ABORTED,
        message="the call met a concurrent change and was undone; retry it",
        details=[
            _packed(error_details_pb2.ErrorInfo(reason=CONCURRENT_CHANGE, domain=STORAGE_DOMAIN)),
            _packed(_retry_info(CONFLICT_RETRY_AFTER_S)),
        ],
    )
    return rpc_status.to_status(status)


def _deadline_status() -> grpc.Status:
    return plain_status(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller's deadline passed")


def plain_status(code: grpc.StatusCode, message: str) -> grpc.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    return rpc_status.to_status(status)


def status_for(error: BaseException) -> grpc.Status | None:
    """The status an expected error becomes, or None for a bug."""
    if isinstance(error, ServiceError):
        return service_error_status(error)
    if isinstance(error, InvalidArgument):
        return invalid_argument_status(error)
    if isinstance(error, deadlines.DeadlinePassed) or (
        deadlines.passed() and isinstance(error, (asyncio.TimeoutError, *CANCELLED))
    ):
        # Storage stopped the work because the caller stopped waiting, not because it failed.
        return _deadline_status()
    if is_data_exception(error):
        return invalid_argument_status(
            InvalidArgument.of("request", "holds a value the database cannot store")
        )
    if is_transaction_conflict(error):
        return conflict_status()
    if is_statement_cancelled(error):
        return plain_status(grpc.StatusCode.UNAVAILABLE, "the database cancelled the call; retry")
    if is_unavailable(error):
        return plain_status(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable; retry later")
    return None
