"""gRPC outcomes as HTTP: grpc-gateway's status mapping, and google.rpc.Status bodies."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.errors import InvalidArgument

# As grpc-gateway maps them (runtime/errors.go, HTTPStatusFromCode).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
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

# Keep the detail types in the default pool so their JSON can be printed.
_DETAIL_TYPES = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest)


def status_json(
    code: int, message: str, details: list[any_pb2.Any] | None = None
) -> dict[str, Any]:
    status = status_pb2.Status(code=code, message=message, details=details or [])
    body: dict[str, Any] = json_format.MessageToDict(
        status, always_print_fields_with_no_presence=True
    )
    return body


def from_rpc_error(error: grpc.aio.AioRpcError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of a failed backend call, rich details kept."""
    http = HTTP_STATUS.get(error.code(), 500)
    status = rpc_status.from_call(error)
    if status is not None:
        return http, status_json(status.code, status.message, list(status.details))
    return http, status_json(error.code().value[0], error.details() or error.code().name)


def from_invalid_argument(error: InvalidArgument) -> dict[str, Any]:
    request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(request)
    return status_json(code_pb2.INVALID_ARGUMENT, str(error), [packed])
