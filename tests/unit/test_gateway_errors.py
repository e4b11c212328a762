"""A backend call cut off by the backend (a replica dying or stopping) is a 503 to retry, never
grpc-gateway's 499, which tells a client it gave up when it did not."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2

from gateway.errors import from_rpc_error


def _failed(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    empty = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, empty, empty, details)


def test_a_backend_cancellation_is_a_503_unavailable() -> None:
    answer = from_rpc_error(_failed(grpc.StatusCode.CANCELLED, "Cancelled on the server side"))
    assert answer.status == 503
    assert answer.body["code"] == code_pb2.UNAVAILABLE
    assert "retry" in answer.body["message"]


def test_no_grpc_code_becomes_499() -> None:
    statuses = {from_rpc_error(_failed(code, "x")).status for code in grpc.StatusCode}
    assert 499 not in statuses
    assert from_rpc_error(_failed(grpc.StatusCode.UNAVAILABLE, "x")).status == 503
