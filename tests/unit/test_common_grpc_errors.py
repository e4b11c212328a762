from __future__ import annotations

import asyncpg
import grpc
import pytest
import structlog
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2, status_pb2

from common.errors import ErrorKind, InvalidArgument, ServiceError
from common.rpc.grpc_errors import status_for
from common.rpc.grpc_server import _run
from common.storage.db import never_sent


def _details(status: grpc.Status) -> status_pb2.Status:
    (key, value) = status.trailing_metadata[0]
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(value)


def test_service_error_carries_error_info() -> None:
    error = ServiceError(ErrorKind.FAILED_PRECONDITION, "PROMO_CODE_EXPIRED", "expired", "d")
    status = status_for(error)
    assert status is not None
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION
    info = error_details_pb2.ErrorInfo()
    assert _details(status).details[0].Unpack(info)
    assert (info.reason, info.domain) == ("PROMO_CODE_EXPIRED", "d")


def test_invalid_argument_names_fields() -> None:
    status = status_for(InvalidArgument.of("code", "must not be empty"))
    assert status is not None
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    request = error_details_pb2.BadRequest()
    assert _details(status).details[0].Unpack(request)
    assert request.field_violations[0].field == "code"


def test_dependency_failure_is_unavailable_and_bugs_are_not_mapped() -> None:
    status = status_for(ConnectionRefusedError())
    assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE
    assert status_for(KeyError("bug")) is None


def test_a_connection_broken_by_a_postgres_restart_is_unavailable_not_internal() -> None:
    """What the PostgreSQL-restart drill met: a pooled connection left mid-protocol."""
    broken = asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    closed = asyncpg.InterfaceError("connection is closed")
    for error in (broken, closed):
        status = status_for(error)
        assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE
        assert never_sent(error)  # so the pool's one-statement helpers send it again
    assert not never_sent(asyncpg.exceptions.ConnectionDoesNotExistError("mid-operation"))
    assert status_for(asyncpg.InterfaceError("cannot use Connection.transaction()")) is None


def test_postgres_data_exceptions_are_invalid_argument() -> None:
    for error in (
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
        asyncpg.exceptions.DatetimeFieldOverflowError("date/time field value out of range"),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
    ):
        status = status_for(error)
        assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert status_for(asyncpg.exceptions.UniqueViolationError("dup")) is None


def test_a_deadlock_victim_is_aborted_and_a_cancelled_statement_unavailable() -> None:
    """A rolled-back transaction is a race the caller may retry, not a bug (INTERNAL)."""
    for error in (
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
    ):
        status = status_for(error)
        assert status is not None and status.code == grpc.StatusCode.ABORTED, error
        details = _details(status).details
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert details[0].Unpack(info) and info.reason == "CONCURRENT_CHANGE", details
        assert details[1].Unpack(retry) and retry.retry_delay.ToMilliseconds() == 50
    cancelled = status_for(asyncpg.exceptions.QueryCanceledError("canceling statement"))
    assert cancelled is not None and cancelled.code == grpc.StatusCode.UNAVAILABLE


class _Context:
    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise grpc.aio.AbortError()  # as grpc.aio's context does


async def test_a_data_exception_is_answered_invalid_argument_and_logged() -> None:
    async def handler(request: object, context: object) -> None:
        raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")

    context = _Context()
    with structlog.testing.capture_logs() as logs, pytest.raises(grpc.aio.AbortError):
        await _run(handler, empty_pb2.Empty(), context)  # type: ignore[arg-type]
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [entry["event"] for entry in logs] == ["data_exception"]
