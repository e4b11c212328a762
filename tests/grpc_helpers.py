"""Reading the rich error details out of a failed gRPC call."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def _details(error: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status in {error!r}"
    return list(status.details)


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in _details(error):
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"no ErrorInfo in {error!r}")


def bad_request_fields(error: grpc.aio.AioRpcError) -> set[str]:
    for detail in _details(error):
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            return {v.field for v in request.field_violations}
    raise AssertionError(f"no BadRequest in {error!r}")


async def rejected(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail with `code`, and returns the error."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    return raised.value


async def reason_of(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    error = await rejected(call, code)
    reason: str = error_info(error).reason
    return reason


def retry_delay(error: grpc.aio.AioRpcError) -> int:
    """The whole seconds of the google.rpc.RetryInfo a throttled call carries."""
    for detail in _details(error):
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return int(info.retry_delay.seconds)
    raise AssertionError(f"no RetryInfo in {error!r}")
