"""`python -m common.processes.healthcheck grpc HOST:PORT | http URL`: exit 0 when serving (for
container health checks, which have no grpcurl or curl in the slim image)."""

from __future__ import annotations

import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def main(argv: list[str]) -> int:
    kind, target = argv
    try:
        return 0 if (grpc_serving(target) if kind == "grpc" else http_ok(target)) else 1
    except (grpc.RpcError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
