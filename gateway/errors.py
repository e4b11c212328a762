"""gRPC outcomes as HTTP: grpc-gateway's status mapping, and google.rpc.Status bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.errors import InvalidArgument
from common.rpc.grpc_errors import bad_request

# As grpc-gateway maps them (runtime/errors.go, HTTPStatusFromCode), but for CANCELLED: a
# backend call the gateway receives CANCELLED for was cut off by the backend (a replica dying
# or stopping); the gateway's own cancellation, when its client goes away, raises
# asyncio.CancelledError instead and answers nobody. grpc-gateway's 499 ("Client Closed
# Request") would tell a client that it gave up when it did not, so it is a 503 here: the
# client retries (a use with its request id), as it does any UNAVAILABLE. A backend's gRPC core
# answers CANCELLED too, at once, to a call it refuses because its worker has too many calls
# waiting to be taken (GRPC_MAX_PENDING): hence a Retry-After of a second.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

BACKEND_CUT_OFF = (
    "the backend stopped, or was too busy to take the call, before it answered; retry (with the"
    " same requestId)"
)
CUT_OFF_RETRY_AFTER = {"retry-after": "1"}

# Keep the detail types in the default pool so their JSON can be printed.
_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
)


def status_json(
    code: int, message: str, details: list[any_pb2.Any] | None = None
) -> dict[str, Any]:
    status = status_pb2.Status(code=code, message=message, details=details or [])
    body: dict[str, Any] = json_format.MessageToDict(
        status, always_print_fields_with_no_presence=True
    )
    return body


@dataclass(frozen=True)
class HttpError:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def retry_after(details: list[any_pb2.Any]) -> dict[str, str]:
    """google.rpc.RetryInfo as an HTTP Retry-After header (whole seconds, rounded up)."""
    for detail in details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.seconds + (1 if info.retry_delay.nanos > 0 else 0)
            return {"retry-after": str(max(delay, 1))}
    return {}


def from_rpc_error(error: grpc.aio.AioRpcError) -> HttpError:
    """The HTTP status, body and headers of a failed backend call, rich details kept."""
    if error.code() == grpc.StatusCode.CANCELLED:
        return HttpError(
            503, status_json(code_pb2.UNAVAILABLE, BACKEND_CUT_OFF), dict(CUT_OFF_RETRY_AFTER)
        )
    http = HTTP_STATUS.get(error.code(), 500)
    status = rpc_status.from_call(error)
    if status is not None:
        details = list(status.details)
        body = status_json(status.code, status.message, details)
        return HttpError(http, body, retry_after(details))
    return HttpError(http, status_json(error.code().value[0], error.details() or error.code().name))


def from_invalid_argument(error: InvalidArgument) -> dict[str, Any]:
    packed = any_pb2.Any()
    packed.Pack(bad_request(error))
    return status_json(code_pb2.INVALID_ARGUMENT, str(error), [packed])
